//! Reading a transmitter's or token endpoint's HTTP response body with a bound on its size,
//! chunk by chunk, so that a hostile or broken peer cannot make jwt-revoker allocate more.

/// The body of `response`, or an error once it would exceed `max` bytes (before reading
/// further).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(format!("response larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("response larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::read_capped;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-request HTTP/1.1 server on 127.0.0.1 answering `response` (raw bytes after the
    /// status line's `HTTP/1.1 200 OK\r\n`): its URL.
    pub(crate) async fn answer_once(response: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0_u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n").await;
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            }
        });
        format!("http://127.0.0.1:{port}/")
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::Client::new().get(url).send().await.expect("send")
    }

    #[tokio::test]
    async fn a_body_within_the_bound_is_read_and_one_beyond_it_is_refused() {
        let sized = |body: &str| format!("content-length: {}\r\n\r\n{body}", body.len());
        let url = answer_once(sized(&"a".repeat(100)).into_bytes()).await;
        assert_eq!(read_capped(get(&url).await, 100).await, Ok(vec![b'a'; 100]));
        let url = answer_once(sized(&"a".repeat(101)).into_bytes()).await;
        assert!(read_capped(get(&url).await, 100).await.is_err());
        // Without a length, the bound holds while reading.
        let mut chunked = b"transfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..10 {
            chunked.extend_from_slice(b"20\r\n");
            chunked.extend_from_slice(&[b'b'; 0x20]);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let url = answer_once(chunked).await;
        let refused = read_capped(get(&url).await, 100).await;
        assert_eq!(refused, Err("response larger than 100 bytes".to_owned()));
    }
}
