//! Just enough HTTP/1.1 to serve the Runtime API to a bootstrap: read one request at a time
//! from a kept-alive connection, and write a response with a known length.

use std::io::{self, BufRead, Read, Write};

/// Larger than anything a Lambda function may return (6 MB), so no honest body is refused.
const MAX_BODY: usize = 8 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Reads the next request on a connection; `Ok(None)` when the peer closed it between requests.
pub(crate) fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut head_len = 0;
    let Some(request_line) = read_line(reader, &mut head_len)? else {
        return Ok(None);
    };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());

    let mut content_length = 0;
    let mut chunked = false;
    loop {
        let line =
            read_line(reader, &mut head_len)?.ok_or_else(|| invalid("connection closed inside the headers".into()))?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("bad header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().map_err(|_| invalid(format!("bad content-length {value:?}")))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }

    let body = if chunked {
        read_chunked(reader)?
    } else {
        if content_length > MAX_BODY {
            return Err(invalid(format!("body of {content_length} bytes is too large")));
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(Request { method, path, body }))
}

/// Writes a response whose body length is known, leaving the connection open for the next request.
pub(crate) fn write_response(
    writer: &mut impl Write,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut head_len = 0;
    loop {
        let size_line = read_line(reader, &mut head_len)?
            .ok_or_else(|| invalid("connection closed inside a chunked body".into()))?;
        let size = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            // Trailers (lambda_runtime's streaming errors use them) end with an empty line.
            while read_line(reader, &mut head_len)?.is_some_and(|line| !line.is_empty()) {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("chunked body is too large".into()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// One CRLF-terminated line without its terminator; `None` at a clean end of stream.
fn read_line(reader: &mut impl BufRead, head_len: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader.by_ref().take((MAX_HEAD - *head_len) as u64 + 1).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    *head_len += read;
    if !line.ends_with(b"\n") {
        return Err(invalid("request head too long or cut short".into()));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map(Some).map_err(|_| invalid("request head is not UTF-8".into()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    #[test]
    fn reads_kept_alive_requests_one_after_another() {
        let wire = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n\
                     POST /2018-06-01/runtime/invocation/id-1/response HTTP/1.1\r\n\
                     content-length: 2\r\n\r\n{}";
        let mut reader = BufReader::new(&wire[..]);

        let first = read_request(&mut reader).unwrap().unwrap();
        let second = read_request(&mut reader).unwrap().unwrap();

        assert_eq!(first.method, "GET");
        assert_eq!(first.path, "/2018-06-01/runtime/invocation/next");
        assert!(first.body.is_empty());
        assert_eq!(second.path, "/2018-06-01/runtime/invocation/id-1/response");
        assert_eq!(second.body, b"{}");
        assert_eq!(read_request(&mut reader).unwrap(), None);
    }

    #[test]
    fn reads_a_chunked_body_with_trailers() {
        let wire = b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                     3\r\n{\"a\r\n4;ext=1\r\n\":1}\r\n0\r\nLambda-Runtime-Function-Error-Type: x\r\n\r\n";

        let request = read_request(&mut BufReader::new(&wire[..])).unwrap().unwrap();

        assert_eq!(request.body, br#"{"a":1}"#);
    }

    #[test]
    fn refuses_a_body_larger_than_lambda_allows() {
        let wire = b"POST /r HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n";

        let error = read_request(&mut BufReader::new(&wire[..])).unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn writes_the_length_and_every_header() {
        let mut out = Vec::new();

        write_response(&mut out, "202 Accepted", &[("Content-Type", "application/json".into())], b"{}").unwrap();

        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
        );
    }
}
