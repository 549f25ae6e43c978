//! The scaled clock: simulated durations (an instance boot, an addon update,
//! a node group rollout) pass `scale` times faster than real time, so a 90 s
//! boot takes about a second at the default scale of 90. Timestamps written
//! into objects stay on the wall clock; only waiting is scaled.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default `--time-scale`.
pub const DEFAULT_TIME_SCALE: f64 = 90.0;

#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<(f64, Instant)>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(DEFAULT_TIME_SCALE)
    }
}

impl Clock {
    /// A clock running `scale` times faster than real time (values ≤ 0 mean 1).
    pub fn new(scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 { scale } else { 1.0 };
        Clock {
            inner: Arc::new((scale, Instant::now())),
        }
    }

    pub fn scale(&self) -> f64 {
        self.inner.0
    }

    /// Simulated time since the clock started.
    pub fn elapsed(&self) -> Duration {
        self.inner.1.elapsed().mul_f64(self.inner.0)
    }

    /// The real duration a simulated one takes.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.inner.0)
    }

    /// Sleep for a simulated duration.
    pub async fn sleep(&self, simulated: Duration) {
        tokio::time::sleep(self.real(simulated)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_durations() {
        let c = Clock::new(90.0);
        assert_eq!(c.real(Duration::from_secs(90)), Duration::from_secs(1));
        assert_eq!(Clock::new(0.0).scale(), 1.0);
        assert_eq!(Clock::new(f64::NAN).scale(), 1.0);
    }
}
