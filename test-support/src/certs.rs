//! A throwaway certificate authority and a server certificate it signs,
//! written as PEM files for PostgreSQL and for clients' `sslrootcert`.

use std::path::PathBuf;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

pub struct Pki {
    _dir: tempfile::TempDir,
    _remove_dir: super::cleanup::Registration,
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// A server certificate valid for the DNS names given, and nothing else.
pub fn make(dns_names: &[&str]) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let remove_dir = super::cleanup::remove_at_exit(dir.path());
    let (ca_key, ca) = authority("event-recorder test CA");
    let (_, other) = authority("unrelated CA");
    let server_key = key();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name(dns_names[0])).unwrap();
    b.set_issuer_name(ca.subject_name()).unwrap();
    b.set_pubkey(&server_key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let mut san = SubjectAlternativeName::new();
    for dns in dns_names {
        san.dns(dns);
    }
    let san = san.build(&b.x509v3_context(Some(&ca), None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let server = b.build();

    let write = |name: &str, pem: Vec<u8>| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.to_pem().unwrap()),
        other_ca: write("other-ca.pem", other.to_pem().unwrap()),
        server_cert: write("server.pem", server.to_pem().unwrap()),
        server_key: write("server.key", server_key.private_key_to_pem_pkcs8().unwrap()),
        _dir: dir,
        _remove_dir: remove_dir,
    }
}

fn authority(common_name: &str) -> (PKey<Private>, X509) {
    let key = key();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name(common_name)).unwrap();
    b.set_issuer_name(&name(common_name)).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (key, b.build())
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn name(common_name: &str) -> openssl::x509::X509Name {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_nid(Nid::COMMONNAME, common_name).unwrap();
    n.build()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}
