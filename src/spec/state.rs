//! `[state]`: where the team keeps this migration's plan, journal and lock.
//! `url = "s3://BUCKET/PREFIX"` shares them through S3 (see
//! `engine::remote`); absent, they stay on the machine that runs podnet.
//! `--state` on the command line wins over the file. Where the state lives
//! is not part of the migration: it stays out of the plan's fingerprint.

use serde::{Deserialize, Serialize};

use super::Problem;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    #[serde(default)]
    pub url: Option<String>,
}

pub fn validate(s: &StateSection, p: &mut Vec<Problem>) {
    if let Some(url) = &s.url
        && let Err(why) = crate::engine::remote::parse_s3_url(url)
    {
        p.push(Problem::new(
            "state.url",
            why,
            "write url = \"s3://BUCKET/PREFIX\" (a bucket the team can write), or remove [state] to keep state on this machine",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_names_the_key_and_the_form() {
        let mut p = vec![];
        validate(
            &StateSection {
                url: Some("s3://Team_State".into()),
            },
            &mut p,
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "state.url");
        assert!(p[0].fix.contains("s3://BUCKET/PREFIX"), "{:?}", p[0]);
        let mut ok = vec![];
        validate(
            &StateSection {
                url: Some("s3://team-state/prod".into()),
            },
            &mut ok,
        );
        assert!(ok.is_empty());
    }
}
