//! A synchronous query to another domain's function: Lambda `Invoke`, JSON in, JSON out. Checkout
//! asks the cart (`GetCart`) and fulfillment (`HoldForCancel`) this way, never their tables.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use serde::Serialize;
use serde::de::DeserializeOwned;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Invokes `function` with `query` and reads its answer. A function error (the other domain's
/// store failed, a timeout) is an answer of no kind: an error, with what the function said.
pub(crate) async fn query<Q: Serialize, R: DeserializeOwned>(
    client: &Client,
    function: &str,
    query: &Q,
) -> Result<R, BoxError> {
    let payload = serde_json::to_vec(query)?;
    let output = client
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload))
        .send()
        .await
        .map_err(aws_sdk_lambda::Error::from)?;
    let answer = output.payload.map(Blob::into_inner).unwrap_or_default();
    if let Some(kind) = output.function_error {
        let detail = String::from_utf8_lossy(&answer);
        return Err(format!("{function} failed ({kind}): {detail}").into());
    }
    Ok(serde_json::from_slice(&answer)?)
}
