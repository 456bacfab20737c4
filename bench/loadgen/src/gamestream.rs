//! GameStream pairing: Moonlight's client steps (nvpairingmanager.cpp), as
//! restated once in punktfunk-testsupport

use crate::*;

/// The text of `<name>` in a GameStream reply, which must be well-formed.
pub(crate) fn xml_field(body: &str, name: &str) -> Result<String> {
    let reply = xml::parse(body).with_context(|| format!("{body:?}"))?;
    reply
        .field(name)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no <{name}> in {body}"))
}

pub(crate) fn gs_get(params: &str) -> Vec<u8> {
    request_bytes(
        "GET",
        &format!("/pair?{}", moonlight::query(params)),
        &[],
        b"",
    )
}

/// Phases 1-4 over HTTP and the phase-5 `pairchallenge` over HTTPS with the
/// new certificate; the PIN typed into the console meanwhile.
pub(crate) async fn gamestream_pair(
    console: &Console,
    http: SocketAddr,
    https: SocketAddr,
    id: &Identity,
    id_tls: &SslConnector,
) -> Result<()> {
    let trace = std::env::var_os("LOADGEN_TRACE").is_some();
    let t0 = Instant::now();
    let mark = |what: &str| {
        if trace {
            eprintln!("  {what}: {:.1} ms", t0.elapsed().as_secs_f64() * 1000.0)
        }
    };
    let pin = format!("{:04}", rand::random::<u16>() % 10_000);
    let mut client = moonlight::Client::random(id, &pin);

    // Phase 1, held until the PIN is entered.
    let q1 = gs_get(&client.getservercert());
    let mut conn = Conn::open(http, None).await?;
    let phase1 = tokio::spawn(async move {
        let r = conn.roundtrip(&q1).await;
        r.map(|r| (conn, r))
    });

    mark("phase 1 sent");
    let pending_id = listed(console, id).await?;
    mark("pending request listed");
    let entered = enter_pin(console.clone(), pending_id, pin);

    mark("pin entered");
    let (mut conn, r1) = phase1.await??;
    mark("phase 1 reply");
    let r1 = r1.text();
    client.read_plaincert(&xml_field(&r1, "plaincert")?)?;

    phases_2_to_4(&mut conn, &mut client, &mark).await?;

    // Phase 5 over HTTPS with the client certificate.
    let mut tls_conn = Conn::open(https, Some(id_tls)).await?;
    let r5 = tls_conn
        .roundtrip(&gs_get(moonlight::PAIRCHALLENGE))
        .await?
        .text();
    if xml_field(&r5, "paired")? != "1" {
        bail!("phase 5: {r5}");
    }
    mark("phase 5");
    let (status, outcome) = entered.await??;
    mark("console answered");
    if status != 200 || outcome["result"] != "paired" {
        bail!("console: HTTP {status} {outcome}");
    }
    Ok(())
}

/// The console's id of the request whose client has `id`'s certificate,
/// once it is listed.
async fn listed(console: &Console, id: &Identity) -> Result<String> {
    let fp = hex::encode(id.fingerprint().as_bytes());
    let mut poll = None;
    loop {
        let (_, state) = console.call(&mut poll, "GET", "/api/pairing", None).await?;
        let found = state["pending"].as_array().and_then(|ps| {
            ps.iter()
                .find(|p| p["fingerprint"] == fp.as_str())
                .and_then(|p| p["id"].as_str().map(str::to_owned))
        });
        if let Some(found) = found {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Types the PIN into the console; its answer comes once the pairing ended.
fn enter_pin(
    console: Console,
    pending_id: String,
    pin: String,
) -> tokio::task::JoinHandle<Result<(u16, serde_json::Value)>> {
    tokio::spawn(async move {
        let mut conn = None;
        console
            .call(
                &mut conn,
                "POST",
                &format!("/api/pending/{pending_id}/pin"),
                Some(serde_json::json!({ "pin": pin })),
            )
            .await
    })
}

/// Phases 2-4 over the held HTTP connection, with the client's own checks.
async fn phases_2_to_4(
    conn: &mut Conn,
    client: &mut moonlight::Client<&Identity>,
    mark: &impl Fn(&str),
) -> Result<()> {
    let r2 = conn
        .roundtrip(&gs_get(&client.clientchallenge()))
        .await?
        .text();
    mark("phase 2");
    client.read_challengeresponse(&xml_field(&r2, "challengeresponse")?)?;
    // Phase 3, and the client's own checks of the host's answer.
    let r3 = conn
        .roundtrip(&gs_get(&client.serverchallengeresp()))
        .await?
        .text();
    mark("phase 3");
    client.check_pairingsecret(&xml_field(&r3, "pairingsecret")?)?;
    let r4 = conn
        .roundtrip(&gs_get(&client.clientpairingsecret()))
        .await?
        .text();
    mark("phase 4");
    if xml_field(&r4, "paired")? != "1" {
        bail!("phase 4: {r4}");
    }
    Ok(())
}

pub(crate) async fn gamestream_pairings(
    console: &Console,
    http: SocketAddr,
    https: SocketAddr,
    ids: &[(Identity, SslConnector)],
) -> Stats {
    let mut s = Stats::default();
    let started = Instant::now();
    for (id, id_tls) in ids {
        let t0 = Instant::now();
        match gamestream_pair(console, http, https, id, id_tls).await {
            Ok(()) => {
                s.ok += 1;
                s.lat.push(t0.elapsed().as_micros() as u32);
            }
            Err(e) => {
                eprintln!("gamestream pairing failed: {e:#}");
                s.errors += 1;
            }
        }
    }
    s.elapsed = started.elapsed();
    s
}
