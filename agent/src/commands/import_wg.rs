//! `edgewire manifest import-wg FILE --address PREFIX [--public-key KEY]`: Kilo's peer
//! config (`kgctl showconf peer NAME`) as the JSON source of a signed manifest, for an
//! operator moving from the unsigned INI to `manifest build`. The JSON goes to stdout;
//! what still needs the operator's hand goes to stderr.

use std::path::Path;

use anyhow::Context;

use crate::keys::PublicKey;
use crate::manifest::{self, wg};
use crate::prefix::Prefix;

pub fn run(file: &Path, address: Prefix, public_key: Option<PublicKey>) -> anyhow::Result<()> {
    let bytes = manifest::read_bounded(file)
        .with_context(|| format!("reading the Kilo peer config {}", file.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not text: expected WireGuard INI", file.display()))?;
    let (json, notes) = import(&text, address, public_key)
        .with_context(|| format!("the Kilo peer config {}", file.display()))?;
    print!("{json}");
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// The JSON source and the notes for the operator.
fn import(
    text: &str,
    address: Prefix,
    public_key: Option<PublicKey>,
) -> Result<(String, Vec<String>), manifest::ManifestError> {
    let mut m = wg::to_manifest(wg::parse_wg(text)?, public_key, address)?;
    // Signed manifests need a serial; 1 is the first one `manifest build` accepts.
    m.serial = 1;
    let mut notes = vec![
        "\"serial\" is 1: raise it above any serial your devices have accepted, and add \
         \"expires\" if you want one"
            .to_string(),
    ];
    if public_key.is_none() {
        notes.push(format!(
            "no --public-key: add this device as a node (role \"edge\", site \"{}\", \
             addresses [\"{}\"]) with the key `edgewire pubkey` prints on it",
            wg::SITE,
            Prefix::host(address.addr())
        ));
    }
    notes.extend(
        m.problems()
            .into_iter()
            .map(|p| format!("fix before `edgewire manifest build`: {p}")),
    );
    Ok((manifest::to_json(&m), notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILO: &str = include_str!("../manifest/testdata/kilo-peer.conf");
    const OWN: &str = "+9FR5rcSXnU3aLEDWGm0KQK5fpRQcPlorzYLaoGr7CQ=";

    #[test]
    fn an_import_with_this_device_builds_as_it_is() {
        let own: PublicKey = OWN.parse().unwrap();
        let (json, notes) = import(KILO, "10.4.0.99/16".parse().unwrap(), Some(own)).unwrap();
        let m = manifest::from_json(&json).unwrap();
        assert_eq!((m.serial, m.nodes.len()), (1, 4));
        assert_eq!(
            m.node(&own).unwrap().addresses,
            vec!["10.4.0.99/32".parse().unwrap()]
        );
        assert!(m.nodes[0].preshared_key.is_some());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            json.contains("\"endpoints\": [\n        \"kilo-b.example.com:51820\""),
            "{json}"
        );
    }

    #[test]
    fn an_import_without_this_device_says_what_to_add() {
        let (json, notes) = import(KILO, "10.4.0.99/16".parse().unwrap(), None).unwrap();
        assert_eq!(manifest::from_json(&json).unwrap().nodes.len(), 3);
        assert!(
            notes[1].contains("addresses [\"10.4.0.99/32\"]"),
            "{notes:?}"
        );
    }

    #[test]
    fn peers_without_an_overlay_address_are_named_as_fixes_for_the_build() {
        let text = KILO.replace("AllowedIPs = 10.4.0.100/32", "AllowedIPs = 10.5.0.0/24");
        let (json, notes) = import(&text, "10.4.0.99/16".parse().unwrap(), None).unwrap();
        assert!(manifest::from_json(&json).is_err());
        let fix = notes.iter().find(|n| n.starts_with("fix before")).unwrap();
        assert!(
            fix.contains("peer-YBbJDIbw") && fix.contains("needs at least one"),
            "{fix}"
        );
    }
}
