//! Finding the channels: on the host through `virsh` (libvirt's guests and
//! their `<channel>`s), in a guest through `/sys/class/virtio-ports`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Error, GUEST_TO_HOST_CHANNEL, HOST_TO_GUEST_CHANNEL};

/// Where a guest's kernel lists its virtio-serial ports, each with a `name` file.
pub const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";

/// Runs `virsh ARGS` and returns what it printed. `virsh` honours
/// `LIBVIRT_DEFAULT_URI` (such as `qemu:///system`).
fn virsh(args: &[&str]) -> Result<String, Error> {
    let output = Command::new("virsh").args(args).output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Discovery(
            "virsh is not installed (Debian: apt-get install libvirt-clients); \
             without it, give the channel's UNIX socket path instead"
                .into(),
        ),
        _ => Error::Discovery(format!("could not run virsh: {e}")),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Discovery(format!(
            "virsh {} failed ({}): {}",
            args.join(" "),
            output.status,
            stderr.trim()
        )));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| Error::Discovery(format!("virsh {} printed non-UTF-8", args.join(" "))))
}

/// The names of the guests running on this host (`virsh list`), sorted.
pub fn find_running_guests() -> Result<Vec<String>, Error> {
    let listing = virsh(&["--quiet", "list", "--name", "--state-running"])?;
    let mut names: Vec<String> = listing.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    names.sort();
    Ok(names)
}

/// The negotiator channels of guest `guest_name` (`virsh dumpxml`): channel
/// name ([`HOST_TO_GUEST_CHANNEL`], [`GUEST_TO_HOST_CHANNEL`]) to the path of
/// QEMU's UNIX socket for it. Empty if the guest has none.
pub fn find_channels_of_guest(guest_name: &str) -> Result<BTreeMap<String, PathBuf>, Error> {
    channels_in_domain_xml(&virsh(&["dumpxml", guest_name])?)
}

/// The first child of `node` named `name`.
fn child<'a, 'input>(node: roxmltree::Node<'a, 'input>, name: &str) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// The negotiator channels of a libvirt domain's XML: every
/// `<channel type='unix'>` whose `<target type='virtio'>` has a negotiator name.
pub fn channels_in_domain_xml(xml: &str) -> Result<BTreeMap<String, PathBuf>, Error> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| Error::Discovery(format!("domain XML: {e}")))?;
    let mut channels = BTreeMap::new();
    let devices = child(doc.root_element(), "devices");
    for channel in devices.iter().flat_map(|d| d.children()).filter(|c| c.has_tag_name("channel")) {
        if channel.attribute("type") != Some("unix") {
            continue;
        }
        let source = child(channel, "source").and_then(|s| s.attribute("path"));
        let target = child(channel, "target").filter(|t| t.attribute("type") == Some("virtio"));
        if let (Some(path), Some(name)) = (source, target.and_then(|t| t.attribute("name"))) {
            if [HOST_TO_GUEST_CHANNEL, GUEST_TO_HOST_CHANNEL].contains(&name) {
                channels.insert(name.to_owned(), PathBuf::from(path));
            }
        }
    }
    Ok(channels)
}

/// The running guests that have `channel` (sorted): with
/// [`HOST_TO_GUEST_CHANNEL`], the guests the host can call.
pub fn find_supported_guests(channel: &str) -> Result<Vec<String>, Error> {
    let mut supported = Vec::new();
    for guest in find_running_guests()? {
        if find_channels_of_guest(&guest)?.contains_key(channel) {
            supported.push(guest);
        }
    }
    Ok(supported)
}

/// The character device of the virtio-serial port named `port_name`, found
/// through [`VIRTIO_PORTS`] (`/dev/vport0p1` and the like).
pub fn find_character_device(port_name: &str) -> Result<PathBuf, Error> {
    find_character_device_in(Path::new(VIRTIO_PORTS), port_name)
}

/// [`find_character_device`] with the port list read from `ports` instead
/// of [`VIRTIO_PORTS`]: the device is `/dev/` and the name of the entry
/// whose `name` file holds `port_name`.
pub fn find_character_device_in(ports: &Path, port_name: &str) -> Result<PathBuf, Error> {
    let entries = std::fs::read_dir(ports).map_err(|e| {
        Error::Discovery(format!("cannot list {} ({e}): is this a KVM/QEMU guest with virtio-serial?", ports.display()))
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| std::fs::read_to_string(entry.path().join("name")).is_ok_and(|name| name.trim() == port_name))
        .map(|entry| Path::new("/dev").join(entry.file_name()))
        .collect();
    found.sort();
    found.into_iter().next().ok_or_else(|| {
        Error::Discovery(format!(
            "no virtio-serial port is named {port_name:?} in {}: the guest needs a \
             <channel type='unix'> with <target type='virtio' name='{port_name}'/>",
            ports.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_from_domain_xml() {
        let xml = r#"<domain type='kvm' id='3'>
  <name>vm1</name>
  <devices>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-vm1/negotiator-host-to-guest.0'/>
      <target type='virtio' name='negotiator-host-to-guest.0' state='connected'/>
      <alias name='channel0'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='/run/g2h.sock'/>
      <target type='virtio' name='negotiator-guest-to-host.0'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='/run/qga.sock'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <channel type='pty'>
      <target type='virtio' name='negotiator-guest-to-host.0'/>
    </channel>
  </devices>
</domain>"#;
        let channels = channels_in_domain_xml(xml).unwrap();
        assert_eq!(channels.len(), 2);
        assert_eq!(channels[GUEST_TO_HOST_CHANNEL], PathBuf::from("/run/g2h.sock"));
        assert!(channels[HOST_TO_GUEST_CHANNEL].ends_with("negotiator-host-to-guest.0"));
        assert!(channels_in_domain_xml("<domain><name>x</name></domain>").unwrap().is_empty());
        assert!(channels_in_domain_xml("<domain").is_err());
    }

    #[test]
    fn character_device_by_port_name() {
        let sys = tempfile::tempdir().unwrap();
        for (entry, name) in [("vport1p1", "org.qemu.guest_agent.0\n"), ("vport1p2", "negotiator-host-to-guest.0\n")] {
            std::fs::create_dir(sys.path().join(entry)).unwrap();
            std::fs::write(sys.path().join(entry).join("name"), name).unwrap();
        }
        std::fs::create_dir(sys.path().join("vport1p3")).unwrap(); // no name file
        assert_eq!(
            find_character_device_in(sys.path(), HOST_TO_GUEST_CHANNEL).unwrap(),
            PathBuf::from("/dev/vport1p2")
        );
        let missing = find_character_device_in(sys.path(), GUEST_TO_HOST_CHANNEL).unwrap_err();
        assert!(missing.to_string().contains("negotiator-guest-to-host.0"), "{missing}");
        assert!(find_character_device_in(&sys.path().join("nope"), HOST_TO_GUEST_CHANNEL).is_err());
    }
}
