//! In-process rtnetlink behind a synchronous face: one current-thread tokio runtime and one
//! netlink socket per [`Netlink`], bound to the network namespace of the thread that opened
//! it. Only link, address and route requests live here; no policy.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use tokio::runtime::Runtime;

use crate::NetworkError;

/// A failed netlink step: what was done on which object, and the kernel's answer.
#[derive(Debug)]
pub(crate) struct NlError {
    pub(crate) op: String,
    pub(crate) source: io::Error,
}

impl NlError {
    /// Whether the kernel answered with this errno.
    pub(crate) fn is(&self, errno: i32) -> bool {
        self.source.raw_os_error() == Some(errno)
    }
}

impl From<NlError> for NetworkError {
    fn from(e: NlError) -> Self {
        NetworkError::Netlink {
            op: e.op,
            source: e.source,
        }
    }
}

/// `ENODEV`, `EEXIST`: the kernel's "no such device" and "already exists".
pub(crate) const ENODEV: i32 = nix::libc::ENODEV;
pub(crate) const EEXIST: i32 = nix::libc::EEXIST;

/// A netlink connection in the namespace where it was opened.
pub(crate) struct Netlink {
    rt: Runtime,
    handle: Handle,
}

/// What the kernel said, as an `io::Error` carrying its errno when it sent one.
fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// An error of step `op`.
pub(crate) fn err(op: impl Into<String>, source: io::Error) -> NlError {
    NlError {
        op: op.into(),
        source,
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub(crate) fn connect() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let (conn, handle, _) = {
            let _guard = rt.enter();
            rtnetlink::new_connection()?
        };
        rt.spawn(conn);
        Ok(Self { rt, handle })
    }

    /// The index and message of the link called `name`, `None` when there is none.
    pub(crate) fn link(&self, name: &str) -> Result<Option<LinkMessage>, NlError> {
        let req = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let res = self.rt.block_on(async move {
            futures::pin_mut!(req);
            req.try_next().await
        });
        match res.map_err(to_io) {
            Ok(msg) => Ok(msg),
            Err(e) if e.raw_os_error() == Some(ENODEV) => Ok(None),
            Err(e) => Err(err(format!("look up link {name}"), e)),
        }
    }

    /// Creates a bridge with a fixed MAC (so it does not change as ports come and go),
    /// up. `EEXIST` is returned as an error for the caller to judge.
    pub(crate) fn add_bridge(&self, name: &str, mac: [u8; 6]) -> Result<(), NlError> {
        let msg = LinkBridge::new(name).address(mac.to_vec()).build();
        self.run(
            format!("create bridge {name}"),
            self.handle.link().add(msg).execute(),
        )
    }

    /// Sets link `index` up.
    pub(crate) fn set_up(&self, index: u32, what: &str) -> Result<(), NlError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.run(
            format!("set {what} up"),
            self.handle.link().set(msg).execute(),
        )
    }

    /// Adds `addr/prefix` to link `index`; `EEXIST` is returned as an error.
    pub(crate) fn add_address(
        &self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
        what: &str,
    ) -> Result<(), NlError> {
        let req = self
            .handle
            .address()
            .add(index, addr.into(), prefix)
            .execute();
        self.run(format!("add address {addr}/{prefix} to {what}"), req)
    }

    /// Creates a veth pair: `host` up and enslaved to `bridge_index` here, its peer made
    /// directly inside the namespace `netns` (`IFLA_NET_NS_FD`) as `peer` with `peer_mac`.
    ///
    /// The peer is left down: the kernel configures it before the pair is joined, so
    /// asking for it up here fails with `ENOTCONN`; bring it up from inside the netns.
    pub(crate) fn add_veth_into(
        &self,
        host: &str,
        bridge_index: u32,
        netns: &impl AsRawFd,
        peer: &str,
        peer_mac: [u8; 6],
    ) -> Result<(), NlError> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::default()
            .name(peer.to_owned())
            .address(peer_mac.to_vec())
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .controller(bridge_index)
            .up()
            .build();
        self.run(
            format!("create veth {host} (peer {peer} in the pod netns)"),
            self.handle.link().add(msg).execute(),
        )
    }

    /// Deletes link `name`; a missing link is success.
    pub(crate) fn delete_link(&self, name: &str) -> Result<(), NlError> {
        let Some(link) = self.link(name)? else {
            return Ok(());
        };
        match self.run(
            format!("delete link {name}"),
            self.handle.link().del(link.header.index).execute(),
        ) {
            Err(e) if e.is(ENODEV) => Ok(()),
            other => other,
        }
    }

    /// The names of the links enslaved to link `master` (a bridge's ports).
    pub(crate) fn ports_of(&self, master: u32) -> Result<Vec<String>, NlError> {
        let req = self.handle.link().get().execute();
        let links: Vec<LinkMessage> = self
            .rt
            .block_on(req.try_collect())
            .map_err(|e| err("list links", to_io(e)))?;
        Ok(links
            .into_iter()
            .filter(|l| {
                l.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Controller(m) if *m == master))
            })
            .filter_map(|l| {
                l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds the default route via `gateway`.
    pub(crate) fn add_default_route(&self, gateway: Ipv4Addr) -> Result<(), NlError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        self.run(
            format!("add default route via {gateway}"),
            self.handle.route().add(route).execute(),
        )
    }

    fn run(
        &self,
        op: String,
        fut: impl std::future::Future<Output = Result<(), rtnetlink::Error>>,
    ) -> Result<(), NlError> {
        self.rt.block_on(fut).map_err(|e| err(op, to_io(e)))
    }
}

/// Whether a link message describes a bridge.
pub(crate) fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}
