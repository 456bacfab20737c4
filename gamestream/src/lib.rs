//! # punktfunk-gamestream: the GameStream (Moonlight) front door
//!
//! A sans-IO implementation of the host side of NVIDIA GameStream pairing as
//! stock Moonlight clients (qt, android, ios, embedded) speak it, and of the
//! XML replies they expect. Typed requests go in; typed replies and
//! [`Effect`]s come out. Around it, [`http`] is the thin actix-web shell
//! (listeners, per-request certificate authorisation, the held
//! `getservercert`) that follows the calling contract below.
//!
//! ## What the core deliberately does not do
//!
//! Everything outside [`http`]: no sockets, no HTTP server, no TLS, no
//! clock, no files, no global RNG:
//! time (`now: Instant`) and randomness (`&mut impl RngCore + CryptoRng`) are
//! parameters. It stores nothing and decides nothing about trust: the shell
//! asks the gate for PINs, writes the registry when told to
//! ([`Effect::StoreDevice`]), and authorises HTTPS requests by the exact
//! SHA-256 fingerprint of the client certificate. Only the generation-7
//! (SHA-256) variant of pairing exists, because the host advertises
//! `appversion` 7 ([`xml::APP_VERSION`]).
//!
//! ## Main types
//!
//! - [`PairQuery`] / [`PairRequest`]: a parsed `/pair` query; hex and
//!   lengths checked at the edge ([`InvalidQuery`] otherwise).
//! - [`PairingSession`]: one attempt, one variant per message expected next.
//! - [`Step`], [`Effect`], [`PairingEnd`], [`PairError`]: what a step yields.
//! - [`Reply`] and the builders in [`xml`]: every GameStream answer.
//!
//! ## The exchange
//!
//! K = SHA-256(salt ‖ PIN)[..16]; E/D = AES-128-ECB, no padding; H = SHA-256;
//! sig(c) = the raw signature bytes of certificate c; CC, CS, SS, SC = 16
//! random bytes each (client challenge, client secret, server secret, server
//! challenge). See `research/gamestream.md` §3.2.
//!
//! ```text
//!  Moonlight client                                  host (shell + this core)
//!  ----------------                                  -----------------------
//!  1 HTTP  phrase=getservercert&salt&clientcert ───▶ PairingSession::start
//!                                                    + a pending request in the gate;
//!                                                    response held until the
//!          (user types the PIN the client shows) ... pin_entered(pin)
//!        ◀─── paired=1, plaincert=hex(host PEM) ─── (client pins this cert)
//!  2 HTTP  clientchallenge = E_K(CC) ──────────────▶ step: draw SS, SC
//!        ◀── challengeresponse = E_K(H(CC‖sig(host)‖SS) ‖ SC)
//!  3 HTTP  serverchallengeresp = E_K(H(SC‖sig(client)‖CS)) ─▶ step: keep it
//!        ◀── pairingsecret = SS ‖ sign_host(SS)
//!          client verifies the signature and H(CC‖sig(host)‖SS);
//!          a mismatch means a wrong PIN: it calls /unpair and stops
//!  4 HTTP  clientpairingsecret = CS ‖ sign_client(CS) ─▶ step: check hash,
//!                                                    then signature
//!        ◀── paired=1 after Effect::StoreDevice ──── (paired=0 if either fails)
//!  5 HTTPS phrase=pairchallenge (client cert, pinned host cert)
//!        ◀── paired=1 ─────────────────────────────── xml::pair_challenge
//! ```
//!
//! A failure after the PIN was entered is [`PairingEnd::PinRejected`], unless
//! H(salt ‖ PIN) has a zero byte in its first 15 bytes: moonlight-qt then
//! derives a wrong key even from the right PIN (about 1 attempt in 18), and
//! the attempt ends as [`PairingEnd::MoonlightQtBug`], so the console can say to
//! press Pair in Moonlight again instead of "wrong PIN".
//!
//! ## Calling contract (what [`http`] does)
//!
//! For `/pair` on either port:
//!
//! 1. `PairQuery::parse(query_pairs)`. On `Err(e)`: drop the session of
//!    (`e.unique_id`, peer address) if any (report [`PairingEnd::Failed`]) and
//!    answer `Reply::from(&e)`.
//! 2. [`PairRequest::GetServerCert`]: [`Knock::of`] says what to ask of the
//!    trust service (the shown name, the certificate, the address, and an
//!    Apollo/Artemis one-time PIN's proof if the client sent `otpauth`);
//!    `Trust::knock` it (refused: answer [`PairError::refused`]), start a
//!    [`PairingSession`] and keep it under (uniqueid, peer address),
//!    replacing and ending an older one ([`PairError::Superseded`]); hold
//!    the response at most [`MAX_HOLD`]. When the PIN arrives (entered in
//!    the console, or at once for a one-time PIN: that PIN on a match, a
//!    random one on a mismatch, so the pairing fails at the client's check
//!    as on Apollo), collect it and call [`PairingSession::pin_entered`]; if
//!    the request ends first, answer [`PairError::ended`].
//! 3. [`PairRequest::PairChallenge`]: answer [`xml::pair_challenge`] (over
//!    HTTPS only after the certificate was authorised, like any HTTPS path).
//! 4. Phases 2–4: take the session out of the map (none: answer
//!    [`PairError::NoSession`]) and call [`PairingSession::step`].
//!    - `Ok(step)`: carry out `step.effects` in order ([`Effect::StoreDevice`]
//!      durably, then report [`Effect::Finished`]); put `step.session` back if
//!      it is `Some`; answer `step.reply`. If an effect fails, answer
//!      `PairError::Host(..).reply()` and report [`PairingEnd::Failed`].
//!    - `Err(e)`: the attempt is over; report `e.outcome()`, answer `e.reply()`.
//!
//!    Report an end through the collected PIN, as
//!    [`PairingEnd::pin_failure`] says (`pin_rejected`, the moonlight-qt
//!    bug, or nothing to record).
//!
//! `/unpair` (HTTP, unauthenticated) removes no device: end the peer's
//! attempt with [`PairingSession::cancelled_by_client`] and answer
//! [`xml::unpair`]. Sessions for which [`PairingSession::is_expired`] holds
//! may be dropped at any time ([`PairingEnd::Abandoned`]). Every reply is sent as
//! HTTP 200 with [`Reply::to_xml`] as body.

#![warn(missing_docs, unreachable_pub)]

pub mod attempts;
pub mod boxart;
mod crypto;
pub mod http;
mod knock;
mod request;
mod session;
pub mod xml;

#[cfg(test)]
mod testdata;

pub use crypto::Rejection;
pub use knock::{Knock, MAX_HOLD};
/// The PIN type is the gate's: the console enters it there, this crate reads it.
pub use punktfunk_certs::Pin;
pub use request::{
    ClientCert, ClientPairingSecret, DeviceName, GetServerCert, InvalidQuery, PairQuery,
    PairRequest, ParseError, Phrase, UniqueId, MAX_CLIENT_CERT_HEX, MAX_DEVICE_NAME_CHARS,
    MAX_SIGNATURE_LEN, MAX_UNIQUE_ID_LEN,
};
pub use session::{
    AwaitingClientChallenge, AwaitingClientPairingSecret, AwaitingPin, AwaitingServerChallengeResp,
    Effect, HostFault, NewDevice, PairError, PairingEnd, PairingSession, Step, PHASE_TIMEOUT,
};
pub use xml::Reply;
