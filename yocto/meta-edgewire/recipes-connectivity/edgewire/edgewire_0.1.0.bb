SUMMARY = "WireGuard overlay agent for constrained ARM field devices"
DESCRIPTION = "edgewire joins a device to a WireGuard overlay network, such as the \
               one Kilo builds between Kubernetes nodes, from a signed manifest, \
               and falls back to a TURN relay when no direct path works. A small \
               single-threaded systemd service."
# nooelint: oelint.vars.homepageping - checking needs the internet, which CI has not
HOMEPAGE = "https://github.com/edgewire/edgewire"
BUGTRACKER = "https://github.com/edgewire/edgewire/issues"
SECTION = "net"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# A release: PV is the file name's version, agent/Cargo.toml's version at the tag
# v${PV}, and SRCREV that tag's commit. scripts/release tags a version and moves this
# recipe (file name, SRCREV, edgewire-crates.inc from the tag's Cargo.lock); CI
# (scripts/yocto-crates --check) fails when they disagree.
SRC_URI = "git://github.com/edgewire/edgewire.git;protocol=https;branch=main;destsuffix=git"
SRCREV = "ac2d2fce07e0dfbe5d0ae85cb82cda709da02b3c"

# UNPACKDIR is ${WORKDIR} on scarthgap and a subdirectory from styhead on; an explicit
# destsuffix keeps the checkout in the same place on every release.
S = "${UNPACKDIR}/git"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd

CVE_PRODUCT = "edgewire"

# The workspace also holds the test lab; build only the agent.
CARGO_SRC_DIR = "agent"
CARGO_LOCK_PATH = "${S}/Cargo.lock"
CARGO_LOCK_SRC_DIR = "${S}"
# The release profile strips the binary, which the already-stripped QA check refuses:
# let the build system strip it and split the debug symbols itself.
CARGO_BUILD_FLAGS += "--config profile.release.strip=false"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/edgewire.service ${D}${systemd_system_unitdir}/edgewire.service
    install -d -m 0755 ${D}${sysconfdir}/edgewire
    install -m 0644 ${S}/systemd/edgewire.conf ${D}${sysconfdir}/edgewire/edgewire.conf
}

SYSTEMD_SERVICE:${PN} = "edgewire.service"
CONFFILES:${PN} = "${sysconfdir}/edgewire/edgewire.conf"

# The agent's data plane is userspace WireGuard over a TUN device; the kernel module
# serves the kernel WireGuard peers (wg, wg-quick) that images often run beside it.
# ca-certificates: the system roots for https manifests when no EDGEWIRE_CA_FILE is set.
RRECOMMENDS:${PN} = "ca-certificates kernel-module-tun kernel-module-wireguard"
