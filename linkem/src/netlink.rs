//! rtnetlink connections, one per namespace, driven by a thread of their own.
//!
//! A netlink socket talks to the namespace it was created in, whichever thread uses
//! it. Each network owns one driver thread running a current-thread tokio runtime
//! that polls all its connections; requests are made from any runtime (or none) through
//! cloned handles and answered over channels. Stopping the driver drops the connections
//! and closes their sockets, which is part of letting the namespaces go.

use std::os::fd::{FromRawFd, IntoRawFd};

use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, TokioSocket};
use nix::errno::Errno;
use tokio::sync::oneshot;

use crate::error::{Error, Result, PRIVILEGE_HINT};
use crate::namespace::NsThread;

/// Flags of a request that changes or deletes an existing object.
pub(crate) const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK;
/// Flags of a dump.
pub(crate) const DUMP: u16 = NLM_F_REQUEST | NLM_F_DUMP;

/// The thread that polls a network's netlink connections.
#[derive(Debug)]
pub(crate) struct Driver {
    runtime: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<NsThread<()>>,
}

impl Driver {
    pub(crate) fn start(name: String) -> Result<Driver> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("start the netlink driver runtime", e))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = NsThread::spawn(name, move || {
            // Returns when `stop` fires or is dropped; dropping the runtime then
            // drops every connection task and closes its socket.
            let _ = runtime.block_on(stopped);
        })
        .map_err(|e| Error::io("spawn the netlink driver thread", e))?;
        Ok(Driver {
            runtime: handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Wraps a socket (created in some namespace) into a connection polled here.
    pub(crate) fn connect(&self, socket: Socket) -> Result<Rtnl> {
        let _guard = self.runtime.enter();
        // SAFETY: the descriptor comes from `into_raw_fd`, so it is open and owned by
        // nobody else; TokioSocket takes ownership of it.
        let socket = unsafe { TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (connection, handle, _) = rtnetlink::from_socket(socket);
        self.runtime.spawn(connection);
        Ok(Rtnl { handle })
    }

    /// Stops the thread and closes every connection. Idempotent.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An rtnetlink connection to one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Rtnl {
    handle: rtnetlink::Handle,
}

impl Rtnl {
    /// rtnetlink's typed request API.
    pub(crate) fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// Sends one request and collects the replies, turning a NACK into
    /// [`Error::Netlink`] with the kernel's message. `op` names what is being done
    /// (peer, link, object) for the error.
    pub(crate) async fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = flags;
        let mut handle = self.handle.clone();
        let mut replies = handle.request(request).map_err(|_| Error::ShutDown)?;
        let mut out = Vec::new();
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(kernel_error(op(), e.raw_code(), &e.header));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Turns an rtnetlink error into ours, keeping errno and the kernel's text.
pub(crate) fn map_rtnetlink(op: impl FnOnce() -> String, err: rtnetlink::Error) -> Error {
    match err {
        rtnetlink::Error::NetlinkError(e) => kernel_error(op(), e.raw_code(), &e.header),
        rtnetlink::Error::RequestFailed => Error::ShutDown,
        other => Error::Netlink {
            op: op(),
            errno: Errno::EPROTO,
            message: Some(other.to_string()),
        },
    }
}

fn kernel_error(op: String, code: i32, payload: &[u8]) -> Error {
    let errno = Errno::from_raw(code.abs());
    let message = ext_ack_message(payload);
    match errno {
        Errno::EPERM | Errno::EACCES => Error::PermissionDenied {
            op,
            errno,
            hint: PRIVILEGE_HINT,
        },
        _ => Error::Netlink { op, errno, message },
    }
}

/// NLMSGERR_ATTR_MSG, include/uapi/linux/netlink.h.
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSG_HDRLEN: usize = 16;

/// The kernel's extended-ack text from an NLMSG_ERROR payload (after the errno): the
/// echoed request header (only the header with NETLINK_CAP_ACK, the whole request
/// without it, see netlink_ack() in net/netlink/af_netlink.c), then TLVs.
pub(crate) fn ext_ack_message(payload: &[u8]) -> Option<String> {
    let echoed_len = payload
        .get(0..4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()) as usize)?;
    // Capped first; if the TLVs don't parse there, the whole request was echoed.
    [NLMSG_HDRLEN, echoed_len.next_multiple_of(4)]
        .into_iter()
        .find_map(|offset| parse_tlvs(payload.get(offset..)?))
        .flatten()
}

/// Parses TLVs that must exactly fill `buf`; `Some(msg)` on a clean parse.
fn parse_tlvs(mut buf: &[u8]) -> Option<Option<String>> {
    let mut message = None;
    while !buf.is_empty() {
        let len = u16::from_ne_bytes(buf.get(0..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf.get(2..4)?.try_into().ok()?) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &buf[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            message = Some(String::from_utf8_lossy(text).into_owned());
        }
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn header(len: u32) -> Vec<u8> {
        let mut h = len.to_ne_bytes().to_vec();
        h.extend_from_slice(&[0; 12]);
        h
    }

    #[test]
    fn ext_ack_text_after_a_capped_header() {
        let mut payload = header(120);
        payload.extend(nla(
            NLMSGERR_ATTR_MSG,
            b"netem: cannot mix duplicating netems with other netems in tree\0",
        ));
        payload.extend(nla(2, &40u32.to_ne_bytes()));
        assert_eq!(
            ext_ack_message(&payload).as_deref(),
            Some("netem: cannot mix duplicating netems with other netems in tree")
        );
    }

    #[test]
    fn ext_ack_text_after_a_whole_echoed_request() {
        let mut payload = header(22);
        payload.extend_from_slice(&[7; 6]);
        payload.extend_from_slice(&[0; 2]); // align to 24
        payload.extend(nla(NLMSGERR_ATTR_MSG, b"Specified qdisc kind is unknown\0"));
        assert_eq!(
            ext_ack_message(&payload).as_deref(),
            Some("Specified qdisc kind is unknown")
        );
    }

    #[test]
    fn no_text_without_tlvs() {
        assert_eq!(ext_ack_message(&header(16)), None);
        assert_eq!(ext_ack_message(&[1, 2]), None);
    }
}
