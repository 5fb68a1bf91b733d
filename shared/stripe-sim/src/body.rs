//! The response body: a list of shared chunks (objects are never copied into a page), with an optional
//! cut-off that simulates a connection dying mid-body.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct SimBody {
    chunks: VecDeque<Bytes>,
    len: u64,
    /// Bytes still allowed before the body fails (truncation fault).
    budget: Option<usize>,
}

impl SimBody {
    pub fn new(chunks: Vec<Bytes>) -> SimBody {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        SimBody {
            chunks: chunks.into(),
            len,
            budget: None,
        }
    }

    pub fn json(bytes: Vec<u8>) -> SimBody {
        SimBody::new(vec![Bytes::from(bytes)])
    }

    /// Announces the full length but stops after half of it.
    pub fn truncate_half(mut self) -> SimBody {
        self.budget = Some((self.len / 2) as usize);
        self
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let Some(mut chunk) = self.chunks.pop_front() else {
            return Poll::Ready(None);
        };
        if let Some(budget) = self.budget {
            if budget == 0 {
                self.chunks.clear();
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "simulated truncated response",
                ))));
            }
            if chunk.len() > budget {
                chunk.truncate(budget);
            }
            self.budget = Some(budget - chunk.len());
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// A JSON response with `status` (500 if the number is not a status).
pub fn json_response(status: u16, body: SimBody) -> Response<SimBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
