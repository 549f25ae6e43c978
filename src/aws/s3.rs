//! Shared state's object store on S3 ([`crate::engine::remote::ObjectStore`]):
//! `GetObject`, `PutObject` (with `If-None-Match: *` to create only when
//! absent: S3 answers 412 `PreconditionFailed` when the key exists),
//! `DeleteObject` and `ListObjectsV2`, under one bucket and prefix.
//!
//! The engine's state calls are synchronous (a journal record is written
//! inside a step), so the client runs on a runtime of its own: a call hands
//! its future to that runtime and waits for the answer, which works from
//! plain threads and from inside podnet's own runtime alike. Requests are
//! path-style when an endpoint is configured (`AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL`: MinIO, moto, the sandbox), since such endpoints have
//! no per-bucket DNS names.

use std::future::Future;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use crate::engine::remote::{ObjectStore, RemoteError};

/// The runtime the S3 calls run on, shut down without blocking when the
/// store is dropped (possibly from inside another runtime).
#[derive(Debug)]
struct Worker(Option<tokio::runtime::Runtime>);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Worker {
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let rt = self.0.as_ref()?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }
}

#[derive(Debug)]
pub struct S3Objects {
    bucket: String,
    prefix: String,
    client: Client,
    worker: Worker,
}

/// Where the store is and who asks.
#[derive(Debug, Clone)]
pub struct S3Target {
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub profile: Option<String>,
}

impl S3Objects {
    /// Loads the SDK configuration (the standard chain) for `t.region` on
    /// the store's own runtime and builds the client.
    pub fn connect(t: &S3Target) -> Result<S3Objects, RemoteError> {
        let url = format!("s3://{}/{}", t.bucket, t.prefix);
        let fail = |message: String| RemoteError {
            url: url.clone(),
            message,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("podnet-s3")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("starting the S3 client: {e}")))?;
        let worker = Worker(Some(rt));
        let target = crate::aws::AwsTarget {
            region: Some(t.region.clone()),
            profile: t.profile.clone(),
        };
        let cfg = worker
            .run(async move { crate::aws::sdk_config(&target).await })
            .ok_or_else(|| fail("the S3 client's runtime stopped".into()))?;
        let endpoint_set = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
        let conf = aws_sdk_s3::config::Builder::from(&cfg)
            .force_path_style(endpoint_set)
            // Checksums only where S3 requires them: the same bytes every
            // S3-compatible store accepts.
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .build();
        Ok(S3Objects {
            bucket: t.bucket.clone(),
            prefix: t.prefix.clone(),
            client: Client::from_conf(conf),
            worker,
        })
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn error(&self, op: &str, key: &str, code: Option<&str>, message: String) -> RemoteError {
        RemoteError {
            url: format!("s3://{}/{}", self.bucket, self.full(key)),
            message: format!(
                "s3:{op} failed: {}{message}",
                code.map(|c| format!("{c}: ")).unwrap_or_default()
            ),
        }
    }

    fn stopped(&self, op: &str, key: &str) -> RemoteError {
        self.error(op, key, None, "the S3 client's runtime stopped".into())
    }

    /// `PutObject`, with `If-None-Match: *` when `only_if_absent`.
    fn put_object(&self, key: &str, body: &[u8], only_if_absent: bool) -> Result<(), Failure> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(body.to_vec()));
        if only_if_absent {
            req = req.if_none_match("*");
        }
        self.worker
            .run(async move { req.send().await.map(|_| ()).map_err(|e| describe(&e)) })
            .unwrap_or_else(|| Err((None, "the S3 client's runtime stopped".into(), None)))
    }
}

/// An S3 failure: its code, message and HTTP status.
type Failure = (Option<String>, String, Option<u16>);

/// An SDK error as code and message (with the context chain when S3 sent
/// no code: a connection refused, a timeout).
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> Failure {
    let status = e.raw_response().map(|r| r.status().as_u16());
    match e.as_service_error() {
        Some(se) if se.code().is_some() => (
            se.code().map(str::to_string),
            se.message().unwrap_or_default().to_string(),
            status,
        ),
        _ => (
            None,
            aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
            status,
        ),
    }
}

impl ObjectStore for S3Objects {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        const OP: &str = "GetObject";
        let req = self.client.get_object().bucket(&self.bucket).key(self.full(key));
        let answer = self
            .worker
            .run(async move {
                match req.send().await {
                    Ok(out) => out
                        .body
                        .collect()
                        .await
                        .map(|b| Some(b.into_bytes().to_vec()))
                        .map_err(|e| (None, e.to_string(), None)),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                    Err(e) => Err(describe(&e)),
                }
            })
            .ok_or_else(|| self.stopped(OP, key))?;
        answer.map_err(|(code, message, _)| self.error(OP, key, code.as_deref(), message))
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError> {
        self.put_object(key, body, false)
            .map_err(|(code, message, _)| self.error("PutObject", key, code.as_deref(), message))
    }

    fn create(&self, key: &str, body: &[u8]) -> Result<bool, RemoteError> {
        match self.put_object(key, body, true) {
            Ok(()) => Ok(true),
            // "If the object already exists, the request fails with 412
            // Precondition Failed" (S3 User Guide, conditional writes).
            Err((code, _, status)) if status == Some(412) || code.as_deref() == Some("PreconditionFailed") => Ok(false),
            Err((code, message, _)) => Err(self.error("PutObject", key, code.as_deref(), message)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), RemoteError> {
        const OP: &str = "DeleteObject";
        let req = self.client.delete_object().bucket(&self.bucket).key(self.full(key));
        self.worker
            .run(async move { req.send().await.map(|_| ()).map_err(|e| describe(&e)) })
            .ok_or_else(|| self.stopped(OP, key))?
            .map_err(|(code, message, _)| self.error(OP, key, code.as_deref(), message))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        const OP: &str = "ListObjectsV2";
        let full = self.full(prefix);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let answer = self
            .worker
            .run(async move {
                let mut keys = vec![];
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(full)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| describe(&e))?;
                    keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
                }
                Ok::<_, Failure>(keys)
            })
            .ok_or_else(|| self.stopped(OP, prefix))?;
        let mut keys: Vec<String> = answer
            .map_err(|(code, message, _)| self.error(OP, prefix, code.as_deref(), message))?
            .into_iter()
            .map(|k| k.strip_prefix(&strip).unwrap_or(&k).to_string())
            .collect();
        keys.sort();
        Ok(keys)
    }
}
