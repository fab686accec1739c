//! A network interface's addresses (`bind_interface`, mosquitto's directive of the same name):
//! a listener bound to an interface listens on the addresses it has when the listener starts,
//! as mosquitto does (it looks them up with getifaddrs(3) and binds them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// The addresses of interface `name`, each with `port`, IPv4 first; an IPv6 link-local
/// address carries the interface's scope. `Err` if the system cannot list its interfaces, or
/// `name` has no address.
pub fn addresses(name: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocates, freed below with
    // freeifaddrs; nothing of it is kept past that.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let node = unsafe { &*entry };
        entry = node.ifa_next;
        if node.ifa_addr.is_null() || node.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let node_name = unsafe { std::ffi::CStr::from_ptr(node.ifa_name) };
        if node_name.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
        let family = i32::from(unsafe { (*node.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let address = unsafe { &*(node.ifa_addr as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr));
                found.push(SocketAddr::new(IpAddr::V4(ip), port));
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let address = unsafe { &*(node.ifa_addr as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(address.sin6_addr.s6_addr);
                found.push(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, address.sin6_scope_id)));
            }
            _ => {}
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found.sort_by_key(|address| address.is_ipv6());
    found.dedup();
    if found.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("interface {name:?} does not exist or has no address"),
        ));
    }
    Ok(found)
}

/// The addresses of `interface` a listener with `bind` address `host` listens on: all of them
/// for `::`, the IPv4 ones for `0.0.0.0`, and `host` alone for an address of the interface.
pub fn bind_addresses(interface: &[SocketAddr], host: IpAddr) -> Result<Vec<SocketAddr>, String> {
    match host {
        IpAddr::V6(ip) if ip.is_unspecified() => Ok(interface.to_vec()),
        IpAddr::V4(ip) if ip.is_unspecified() => {
            let v4: Vec<SocketAddr> = interface.iter().copied().filter(SocketAddr::is_ipv4).collect();
            if v4.is_empty() {
                return Err("the interface has no IPv4 address".into());
            }
            Ok(v4)
        }
        ip => match interface.iter().find(|address| address.ip() == ip) {
            Some(address) => Ok(vec![*address]),
            None => Err(format!("{ip} is not an address of the interface")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_interface_has_the_loopback_address() {
        let addresses = addresses("lo", 1883).unwrap();
        assert!(addresses.contains(&"127.0.0.1:1883".parse().unwrap()), "{addresses:?}");
        assert!(addresses[0].is_ipv4());
        let error = super::addresses("no-such-interface0", 1883).unwrap_err();
        assert!(error.to_string().contains("no-such-interface0"), "{error}");
    }

    #[test]
    fn the_bind_address_picks_among_the_interfaces() {
        let interface: Vec<SocketAddr> = vec!["10.0.0.5:1883".parse().unwrap(), "[fd00::5]:1883".parse().unwrap()];
        assert_eq!(bind_addresses(&interface, "::".parse().unwrap()).unwrap(), interface);
        assert_eq!(bind_addresses(&interface, "0.0.0.0".parse().unwrap()).unwrap(), interface[..1]);
        assert_eq!(bind_addresses(&interface, "fd00::5".parse().unwrap()).unwrap(), interface[1..]);
        assert!(bind_addresses(&interface, "10.0.0.6".parse().unwrap()).unwrap_err().contains("not an address"));
    }
}
