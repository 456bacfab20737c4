//! Parsing a `/pair` query into a typed [`PairQuery`].
//!
//! This is the only place that looks at query strings. Hex and lengths are
//! checked here, once; past this module no code sees a `(String, String)`.
//!
//! What clients send (see `research/gamestream.md` §3.1 and moonlight-qt
//! `nvpairingmanager.cpp`): every request carries `uniqueid` (usually the
//! constant `0123456789ABCDEF`), most add a random `uuid`, `devicename=roth`
//! and `updateState=1`, which carry no meaning and are ignored. Phase 1 and
//! phase 5 name themselves with `phrase=getservercert` / `phrase=pairchallenge`;
//! phases 2–4 carry no `phrase` in stock clients and are recognised by their
//! one data parameter, as Sunshine `src/nvhttp.cpp` (`pair`) does. Some
//! third-party clients also send `phrase=clientchallenge` and the like; that is
//! accepted when it agrees with the data parameter.

use std::fmt;

use openssl::x509::X509;
use punktfunk_certs::Fingerprint;

/// Most hex characters accepted for `clientcert` (the hex of the client's PEM
/// text). A stock RSA-2048 client certificate is about 2,200; this leaves room
/// for RSA-4096 and a few extensions while bounding what a peer can make the
/// host decode and parse.
pub const MAX_CLIENT_CERT_HEX: usize = 8 * 1024;

/// Longest signature accepted in `clientpairingsecret`, in bytes (RSA-8192).
pub const MAX_SIGNATURE_LEN: usize = 1024;

/// Longest `uniqueid` accepted, in characters.
pub const MAX_UNIQUE_ID_LEN: usize = 64;

/// Longest `devicename` kept, in characters (longer names are truncated).
pub const MAX_DEVICE_NAME_CHARS: usize = punktfunk_certs::name::MAX_NAME_CHARS;

/// Most query parameters accepted in one request.
const MAX_PARAMETERS: usize = 32;

/// Longest value accepted for any parameter without a tighter bound of its own.
const MAX_OTHER_VALUE_LEN: usize = 256;

/// Longest unknown `phrase` value echoed back in an error message.
const MAX_ECHOED_PHRASE: usize = 32;

/// The GameStream pairing phase a request belongs to, named as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phrase {
    /// Phase 1: the client sends its certificate and salt, the host answers
    /// with its certificate once the PIN has been entered.
    GetServerCert,
    /// Phase 2: the client's encrypted challenge.
    ClientChallenge,
    /// Phase 3: the client's encrypted answer to the server challenge.
    ServerChallengeResp,
    /// Phase 4: the client's secret and its signature.
    ClientPairingSecret,
    /// Phase 5, over HTTPS: "am I paired now?".
    PairChallenge,
}

impl Phrase {
    /// The name clients use on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetServerCert => "getservercert",
            Self::ClientChallenge => "clientchallenge",
            Self::ServerChallengeResp => "serverchallengeresp",
            Self::ClientPairingSecret => "clientpairingsecret",
            Self::PairChallenge => "pairchallenge",
        }
    }

    fn from_wire(s: &str) -> Option<Self> {
        [
            Self::GetServerCert,
            Self::ClientChallenge,
            Self::ServerChallengeResp,
            Self::ClientPairingSecret,
            Self::PairChallenge,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Phrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client's `uniqueid`: 1 to 64 characters of `A-Z a-z 0-9 - _ .`.
///
/// It identifies neither a device nor a user (every stock client but
/// moonlight-qt sends `0123456789ABCDEF`), so it is only ever used together
/// with the peer address to find a pairing in progress, never to authorise.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UniqueId(String);

impl UniqueId {
    /// Checks and wraps a `uniqueid` value.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_UNIQUE_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::InvalidUniqueId)
        }
    }

    /// The value as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UniqueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UniqueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UniqueId({})", self.0)
    }
}

/// The `devicename` a client gave, cleaned for display by the one name rule
/// of every door (`punktfunk_certs::name`: no control or invisible
/// formatting characters, whitespace folded, at most
/// [`MAX_DEVICE_NAME_CHARS`] characters).
///
/// Stock Moonlight clients all send `roth`; Apollo's client sends the device
/// model. It is a hint for the console, never an identity.
pub use punktfunk_certs::DisplayName as DeviceName;

/// The client certificate sent in phase 1, parsed.
#[derive(Clone)]
pub struct ClientCert {
    x509: X509,
    pem: String,
    der: Vec<u8>,
    fingerprint: Fingerprint,
}

impl ClientCert {
    /// Parses PEM text (the first certificate in it; trailing text such as
    /// moonlight-embedded's final newline is ignored).
    pub fn from_pem(pem: &[u8]) -> Result<Self, ParseError> {
        let x509 = X509::from_pem(pem).map_err(|_| ParseError::InvalidClientCert)?;
        let der = x509.to_der().map_err(|_| ParseError::InvalidClientCert)?;
        let pem = x509.to_pem().map_err(|_| ParseError::InvalidClientCert)?;
        // OpenSSL writes PEM as ASCII.
        let pem = String::from_utf8(pem).map_err(|_| ParseError::InvalidClientCert)?;
        Ok(Self {
            fingerprint: Fingerprint::of_der(&der),
            x509,
            pem,
            der,
        })
    }

    /// The certificate.
    pub fn x509(&self) -> &X509 {
        &self.x509
    }

    /// The certificate re-encoded as PEM by OpenSSL (canonical form).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The certificate's DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER: the name the registry and the TLS layer use.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Phase 1 (`phrase=getservercert`).
#[derive(Clone, Debug)]
pub struct GetServerCert {
    /// The `devicename` parameter, cleaned; `None` if absent or empty.
    pub device_name: Option<DeviceName>,
    /// 16 random bytes from the client; the AES key is derived from them and the PIN.
    pub salt: [u8; 16],
    /// The `salt` parameter as the client wrote it (32 hex digits, either
    /// case): a one-time PIN's `otpauth` hashes this text, not the bytes.
    pub salt_text: String,
    /// `otpauth` (Apollo/Artemis one-time PINs): SHA-256 over the one-time
    /// PIN, `salt_text` and the passphrase; `None` if absent.
    pub otpauth: Option<[u8; 32]>,
    /// The client's certificate, which the device will be pinned to.
    pub client_cert: ClientCert,
}

/// Phase 4 (`clientpairingsecret`): the client secret and the client's
/// signature over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPairingSecret {
    /// The 16-byte client secret.
    pub secret: [u8; 16],
    /// The signature over `secret` made with the client certificate's key
    /// (1 to [`MAX_SIGNATURE_LEN`] bytes; 256 for stock RSA-2048 clients).
    pub signature: Vec<u8>,
}

/// One `/pair` request, by phase, with its data checked.
#[derive(Clone, Debug)]
pub enum PairRequest {
    /// Phase 1.
    GetServerCert(GetServerCert),
    /// Phase 2: the client challenge, AES-encrypted (one block).
    ClientChallenge([u8; 16]),
    /// Phase 3: the client's hash, AES-encrypted (two blocks).
    ServerChallengeResp([u8; 32]),
    /// Phase 4.
    ClientPairingSecret(ClientPairingSecret),
    /// Phase 5 (over HTTPS).
    PairChallenge,
}

impl PairRequest {
    /// The phase this request belongs to.
    pub fn phrase(&self) -> Phrase {
        match self {
            Self::GetServerCert(_) => Phrase::GetServerCert,
            Self::ClientChallenge(_) => Phrase::ClientChallenge,
            Self::ServerChallengeResp(_) => Phrase::ServerChallengeResp,
            Self::ClientPairingSecret(_) => Phrase::ClientPairingSecret,
            Self::PairChallenge => Phrase::PairChallenge,
        }
    }
}

/// A parsed `/pair` query.
#[derive(Clone, Debug)]
pub struct PairQuery {
    /// Who claims to be asking (together with the peer address, the key of a
    /// pairing in progress).
    pub unique_id: UniqueId,
    /// What is asked.
    pub request: PairRequest,
}

impl PairQuery {
    /// Parses the decoded query parameters of a `/pair` request, e.g. from
    /// `actix_web::web::Query<Vec<(String, String)>>` or
    /// `url::form_urlencoded::parse`. Unknown parameters are ignored; a known
    /// one given twice is refused.
    pub fn parse<I, K, V>(pairs: I) -> Result<Self, InvalidQuery>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let params = Params::collect(pairs).map_err(InvalidQuery::anonymous)?;
        let unique_id = params
            .get("uniqueid")
            .ok_or(ParseError::MissingParameter("uniqueid"))
            .and_then(UniqueId::parse)
            .map_err(InvalidQuery::anonymous)?;
        match parse_request(&params) {
            Ok(request) => Ok(Self { unique_id, request }),
            Err(error) => Err(InvalidQuery {
                unique_id: Some(unique_id),
                error,
            }),
        }
    }
}

/// Why a query was refused, plus the `uniqueid` if it was valid, so the shell
/// can end that client's pairing in progress (any error ends it, as Sunshine's
/// `fail_pair` does).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct InvalidQuery {
    /// The `uniqueid`, if it was present and well-formed.
    pub unique_id: Option<UniqueId>,
    /// What was wrong.
    #[source]
    pub error: ParseError,
}

impl InvalidQuery {
    fn anonymous(error: ParseError) -> Self {
        Self {
            unique_id: None,
            error,
        }
    }
}

/// What is wrong with a `/pair` query. Every variant is the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A required parameter is absent.
    #[error("the request lacks the `{0}` parameter")]
    MissingParameter(&'static str),
    /// A known parameter appears more than once.
    #[error("the `{0}` parameter appears more than once")]
    DuplicateParameter(&'static str),
    /// More parameters than any client sends.
    #[error("the request has more than {MAX_PARAMETERS} parameters")]
    TooManyParameters,
    /// A value is longer than allowed.
    #[error("the `{param}` parameter is longer than {max} characters")]
    TooLong {
        /// The parameter.
        param: &'static str,
        /// Its limit.
        max: usize,
    },
    /// A value that should be hexadecimal is not.
    #[error("the `{0}` parameter is not hexadecimal")]
    NotHex(&'static str),
    /// A hex value decodes to the wrong number of bytes.
    #[error("the `{param}` parameter must be {expected} bytes ({} hex digits), it has {got} hex digits", expected * 2)]
    WrongLength {
        /// The parameter.
        param: &'static str,
        /// Bytes expected.
        expected: usize,
        /// Hex digits received.
        got: usize,
    },
    /// `uniqueid` is empty, too long, or has characters outside `A-Z a-z 0-9 - _ .`.
    #[error("the `uniqueid` parameter must be 1 to {MAX_UNIQUE_ID_LEN} characters of A-Z, a-z, 0-9, '-', '_', '.'")]
    InvalidUniqueId,
    /// `clientcert` is not the hex of a PEM certificate.
    #[error("the `clientcert` parameter is not a PEM certificate")]
    InvalidClientCert,
    /// `clientpairingsecret` has no signature after the 16-byte secret.
    #[error("the client pairing secret is too short")]
    PairingSecretTooShort,
    /// `phrase` names no pairing phase.
    #[error("unknown pairing phrase `{0}`")]
    UnknownPhrase(String),
    /// Neither `phrase` nor a phase's data parameter is present.
    #[error("invalid pairing request: no phrase and no pairing data")]
    NoPhase,
    /// Data parameters of more than one phase are present.
    #[error("invalid pairing request: data of more than one phase (`{0}` and `{1}`)")]
    Ambiguous(Phrase, Phrase),
}

/// The known parameters of one query, each at most once.
struct Params {
    found: Vec<(&'static str, String)>,
    /// The first problem with a parameter other than `uniqueid`, reported
    /// after `uniqueid` has been read so the error can name the client.
    deferred: Option<ParseError>,
}

const KNOWN: [&str; 9] = [
    "uniqueid",
    "otpauth",
    "devicename",
    "phrase",
    "salt",
    "clientcert",
    "clientchallenge",
    "serverchallengeresp",
    "clientpairingsecret",
];

/// Longest raw value accepted per known parameter, checked before any copy.
fn max_len(param: &str) -> usize {
    match param {
        "clientcert" => MAX_CLIENT_CERT_HEX,
        "clientpairingsecret" => 2 * (16 + MAX_SIGNATURE_LEN),
        // devicename and phrase; uniqueid and the fixed-size hex values get
        // exact checks later, this only bounds the copy.
        _ => MAX_OTHER_VALUE_LEN,
    }
}

impl Params {
    fn collect<I, K, V>(pairs: I) -> Result<Self, ParseError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut params = Self {
            found: Vec::new(),
            deferred: None,
        };
        for (count, (k, v)) in pairs.into_iter().enumerate() {
            if count >= MAX_PARAMETERS {
                return Err(ParseError::TooManyParameters);
            }
            let Some(&key) = KNOWN.iter().find(|known| **known == k.as_ref()) else {
                continue;
            };
            let v = v.as_ref();
            let max = max_len(key);
            let problem = if params.has(key) {
                Some(ParseError::DuplicateParameter(key))
            } else if v.len() > max {
                Some(ParseError::TooLong { param: key, max })
            } else {
                None
            };
            match problem {
                None => params.found.push((key, v.to_owned())),
                // Without one valid uniqueid there is no client to name.
                Some(ParseError::TooLong { .. }) if key == "uniqueid" => {
                    return Err(ParseError::InvalidUniqueId)
                }
                Some(p) if key == "uniqueid" => return Err(p),
                Some(p) => {
                    params.deferred.get_or_insert(p);
                }
            }
        }
        Ok(params)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.found
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn require(&self, key: &'static str) -> Result<&str, ParseError> {
        self.get(key).ok_or(ParseError::MissingParameter(key))
    }
}

fn parse_request(params: &Params) -> Result<PairRequest, ParseError> {
    if let Some(problem) = &params.deferred {
        return Err(problem.clone());
    }
    Ok(match phase_of(params)? {
        Phrase::GetServerCert => {
            let salt_text = params.require("salt")?;
            PairRequest::GetServerCert(GetServerCert {
                device_name: params.get("devicename").and_then(DeviceName::sanitize),
                salt: fixed_hex("salt", salt_text)?,
                salt_text: salt_text.to_owned(),
                otpauth: params
                    .get("otpauth")
                    .map(|v| fixed_hex("otpauth", v))
                    .transpose()?,
                client_cert: client_cert(params.require("clientcert")?)?,
            })
        }
        Phrase::ClientChallenge => PairRequest::ClientChallenge(fixed_hex(
            "clientchallenge",
            params.require("clientchallenge")?,
        )?),
        Phrase::ServerChallengeResp => PairRequest::ServerChallengeResp(fixed_hex(
            "serverchallengeresp",
            params.require("serverchallengeresp")?,
        )?),
        Phrase::ClientPairingSecret => {
            let bytes = var_hex(
                "clientpairingsecret",
                params.require("clientpairingsecret")?,
            )?;
            // Sunshine's `clientpairingsecret` refuses 16 bytes or fewer:
            // there must be a signature after the secret.
            let (secret, signature) = match bytes.split_first_chunk::<16>() {
                Some((secret, signature)) if !signature.is_empty() => (*secret, signature),
                _ => return Err(ParseError::PairingSecretTooShort),
            };
            PairRequest::ClientPairingSecret(ClientPairingSecret {
                secret,
                signature: signature.to_vec(),
            })
        }
        Phrase::PairChallenge => PairRequest::PairChallenge,
    })
}

/// Which phase a `/pair` request is: its `phrase`, or the one data
/// parameter it carries (clients send either), never two that disagree.
fn phase_of(params: &Params) -> Result<Phrase, ParseError> {
    let data_phases = [
        Phrase::ClientChallenge,
        Phrase::ServerChallengeResp,
        Phrase::ClientPairingSecret,
    ];
    let mut present = data_phases.into_iter().filter(|p| params.has(p.as_str()));
    let data_phase = present.next();
    if let (Some(a), Some(b)) = (data_phase, present.next()) {
        return Err(ParseError::Ambiguous(a, b));
    }
    let phrase = match params.get("phrase") {
        Some(raw) => Some(Phrase::from_wire(raw).ok_or_else(|| {
            ParseError::UnknownPhrase(raw.chars().take(MAX_ECHOED_PHRASE).collect())
        })?),
        None => None,
    };
    match (phrase, data_phase) {
        (None, None) => Err(ParseError::NoPhase),
        (None, Some(p)) => Ok(p),
        // A data phrase must come with its own parameter.
        (Some(p), None) if data_phases.contains(&p) => {
            Err(ParseError::MissingParameter(p.as_str()))
        }
        (Some(p), None) => Ok(p),
        (Some(p), Some(d)) if p == d => Ok(p),
        (Some(p), Some(d)) => Err(ParseError::Ambiguous(p, d)),
    }
}

fn fixed_hex<const N: usize>(param: &'static str, value: &str) -> Result<[u8; N], ParseError> {
    if value.len() != 2 * N {
        return Err(ParseError::WrongLength {
            param,
            expected: N,
            got: value.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out).map_err(|_| ParseError::NotHex(param))?;
    Ok(out)
}

fn var_hex(param: &'static str, value: &str) -> Result<Vec<u8>, ParseError> {
    hex::decode(value).map_err(|_| ParseError::NotHex(param))
}

fn client_cert(value: &str) -> Result<ClientCert, ParseError> {
    let pem = var_hex("clientcert", value)?;
    ClientCert::from_pem(&pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_CRT: &str = include_str!("../tests/data/client.crt");

    fn query(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut q = vec![
            ("uniqueid".to_owned(), "0123456789ABCDEF".to_owned()),
            (
                "uuid".to_owned(),
                "f9dbc7ffb957d14885bdcf30e690523a".to_owned(),
            ),
            ("devicename".to_owned(), "roth".to_owned()),
            ("updateState".to_owned(), "1".to_owned()),
        ];
        q.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        q
    }

    fn cert_hex() -> String {
        hex::encode(CLIENT_CRT)
    }

    fn err(q: Vec<(String, String)>) -> ParseError {
        PairQuery::parse(q).unwrap_err().error
    }

    #[test]
    fn getservercert_is_parsed() {
        let salt = "00112233445566778899AABBCCDDEEFF";
        let q = PairQuery::parse(query(&[
            ("phrase", "getservercert"),
            ("salt", salt),
            ("clientcert", &cert_hex()),
        ]))
        .unwrap();
        assert_eq!(q.unique_id.as_str(), "0123456789ABCDEF");
        let PairRequest::GetServerCert(g) = q.request else {
            panic!("wrong variant")
        };
        assert_eq!(hex::encode_upper(g.salt), salt);
        assert_eq!(g.device_name.unwrap().as_str(), "roth");
        assert_eq!(g.client_cert.pem(), CLIENT_CRT);
    }

    #[test]
    fn data_phases_are_recognised_without_phrase() {
        let q = PairQuery::parse(query(&[("clientchallenge", &"ab".repeat(16))])).unwrap();
        assert!(matches!(q.request, PairRequest::ClientChallenge(c) if c == [0xab; 16]));
        let q = PairQuery::parse(query(&[("serverchallengeresp", &"CD".repeat(32))])).unwrap();
        assert!(matches!(q.request, PairRequest::ServerChallengeResp(c) if c == [0xcd; 32]));
        let secret = format!("{}{}", "01".repeat(16), "02".repeat(256));
        let q = PairQuery::parse(query(&[("clientpairingsecret", &secret)])).unwrap();
        let PairRequest::ClientPairingSecret(s) = q.request else {
            panic!("wrong variant")
        };
        assert_eq!(s.secret, [1; 16]);
        assert_eq!(s.signature, vec![2; 256]);
        let q = PairQuery::parse(query(&[("phrase", "pairchallenge")])).unwrap();
        assert!(matches!(q.request, PairRequest::PairChallenge));
    }

    #[test]
    fn matching_data_phrase_is_accepted_and_mismatch_refused() {
        let c = "ab".repeat(16);
        let q = PairQuery::parse(query(&[
            ("phrase", "clientchallenge"),
            ("clientchallenge", &c),
        ]))
        .unwrap();
        assert_eq!(q.request.phrase(), Phrase::ClientChallenge);
        assert_eq!(
            err(query(&[
                ("phrase", "getservercert"),
                ("clientchallenge", &c)
            ])),
            ParseError::Ambiguous(Phrase::GetServerCert, Phrase::ClientChallenge)
        );
        assert_eq!(
            err(query(&[("phrase", "serverchallengeresp")])),
            ParseError::MissingParameter("serverchallengeresp")
        );
        assert_eq!(
            err(query(&[
                ("clientchallenge", &c),
                ("serverchallengeresp", &"00".repeat(32))
            ])),
            ParseError::Ambiguous(Phrase::ClientChallenge, Phrase::ServerChallengeResp)
        );
    }

    #[test]
    fn uniqueid_is_required_and_checked() {
        let q = vec![("phrase".to_owned(), "pairchallenge".to_owned())];
        let e = PairQuery::parse(q).unwrap_err();
        assert!(e.unique_id.is_none());
        assert_eq!(e.error, ParseError::MissingParameter("uniqueid"));
        for bad in ["", "<script>", "a b", &"a".repeat(65), &"a".repeat(10_000)] {
            let q = vec![
                ("uniqueid".to_owned(), bad.to_owned()),
                ("phrase".to_owned(), "pairchallenge".to_owned()),
            ];
            assert_eq!(
                PairQuery::parse(q).unwrap_err().error,
                ParseError::InvalidUniqueId,
                "{bad:?}"
            );
        }
        // Qt's random id: lowercase hex, not zero-padded.
        assert!(UniqueId::parse("3f0a9b2c1d").is_ok());
    }

    #[test]
    fn errors_after_uniqueid_keep_it() {
        let e = PairQuery::parse(query(&[("clientchallenge", "zz")])).unwrap_err();
        assert_eq!(e.unique_id.unwrap().as_str(), "0123456789ABCDEF");
    }

    #[test]
    fn bad_hex_and_lengths_are_refused() {
        assert_eq!(
            err(query(&[("clientchallenge", &"zz".repeat(16))])),
            ParseError::NotHex("clientchallenge")
        );
        assert_eq!(
            err(query(&[("clientchallenge", &"ab".repeat(15))])),
            ParseError::WrongLength {
                param: "clientchallenge",
                expected: 16,
                got: 30
            }
        );
        assert_eq!(
            err(query(&[("serverchallengeresp", &"ab".repeat(16))])),
            ParseError::WrongLength {
                param: "serverchallengeresp",
                expected: 32,
                got: 32
            }
        );
        assert_eq!(
            err(query(&[("clientpairingsecret", &"ab".repeat(16))])),
            ParseError::PairingSecretTooShort
        );
        assert_eq!(
            err(query(&[("clientpairingsecret", "abc")])),
            ParseError::NotHex("clientpairingsecret")
        );
        // Multi-byte characters of the right byte length must not panic.
        assert_eq!(
            err(query(&[("clientchallenge", &"é".repeat(16))])),
            ParseError::NotHex("clientchallenge")
        );
    }

    #[test]
    fn short_salt_and_bad_cert_are_refused() {
        let cert = cert_hex();
        assert_eq!(
            err(query(&[
                ("phrase", "getservercert"),
                ("salt", "0011"),
                ("clientcert", &cert)
            ])),
            ParseError::WrongLength {
                param: "salt",
                expected: 16,
                got: 4
            }
        );
        assert_eq!(
            err(query(&[("phrase", "getservercert"), ("clientcert", &cert)])),
            ParseError::MissingParameter("salt")
        );
        let salt = "00".repeat(16);
        assert_eq!(
            err(query(&[("phrase", "getservercert"), ("salt", &salt)])),
            ParseError::MissingParameter("clientcert")
        );
        assert_eq!(
            err(query(&[
                ("phrase", "getservercert"),
                ("salt", &salt),
                (
                    "clientcert",
                    &hex::encode("-----BEGIN CERTIFICATE-----\nAAAA\n")
                )
            ])),
            ParseError::InvalidClientCert
        );
    }

    #[test]
    fn oversized_clientcert_is_refused_before_decoding() {
        let salt = "00".repeat(16);
        let huge = "41".repeat(MAX_CLIENT_CERT_HEX / 2 + 1);
        assert_eq!(
            err(query(&[
                ("phrase", "getservercert"),
                ("salt", &salt),
                ("clientcert", &huge)
            ])),
            ParseError::TooLong {
                param: "clientcert",
                max: MAX_CLIENT_CERT_HEX
            }
        );
    }

    #[test]
    fn duplicates_unknown_phrases_and_floods_are_refused() {
        let mut q = query(&[("phrase", "pairchallenge")]);
        q.push(("uniqueid".to_owned(), "x".to_owned()));
        assert_eq!(err(q), ParseError::DuplicateParameter("uniqueid"));
        assert_eq!(
            err(query(&[("phrase", &"x".repeat(200))])),
            ParseError::UnknownPhrase("x".repeat(MAX_ECHOED_PHRASE))
        );
        assert_eq!(err(query(&[])), ParseError::NoPhase);
        let flood: Vec<(String, String)> =
            (0..100).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(err(flood), ParseError::TooManyParameters);
    }

    #[test]
    fn device_names_are_cleaned() {
        assert_eq!(DeviceName::sanitize("  roth \n").unwrap().as_str(), "roth");
        assert_eq!(
            DeviceName::sanitize("a\u{0}b\u{7}c").unwrap().as_str(),
            "abc"
        );
        assert!(DeviceName::sanitize(" \t ").is_none());
        // The same rule as the native door: bidi overrides and zero-width
        // characters go, whitespace folds.
        assert_eq!(
            DeviceName::sanitize("Living Room\u{202E}\u{200B}\t\tTV")
                .unwrap()
                .as_str(),
            "Living Room TV"
        );
        assert_eq!(
            DeviceName::sanitize(&"é".repeat(100))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            MAX_DEVICE_NAME_CHARS
        );
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(
            pairs in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "uniqueid", "devicename", "phrase", "salt", "clientcert",
                        "clientchallenge", "serverchallengeresp", "clientpairingsecret", "uuid",
                    ]),
                    ".{0,80}",
                ),
                0..12,
            )
        ) {
            let _ = PairQuery::parse(pairs);
        }

        #[test]
        fn parser_never_panics_on_hexish_values(
            phrase in proptest::sample::select(vec!["getservercert", "pairchallenge", "clientchallenge", ""]),
            salt in "[0-9a-fA-F]{0,40}",
            cert in "[0-9a-fA-F]{0,200}",
            secret in "[0-9a-fA-F]{0,80}",
        ) {
            let q = vec![
                ("uniqueid", "0123456789ABCDEF".to_owned()),
                ("phrase", phrase.to_owned()),
                ("salt", salt),
                ("clientcert", cert),
                ("clientpairingsecret", secret),
            ];
            let _ = PairQuery::parse(q);
        }
    }
}
