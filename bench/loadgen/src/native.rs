//! Native pairing

use crate::*;

pub(crate) async fn native_pairings(
    console: &Console,
    addr: &HostAddr,
    clients: Vec<Client>,
) -> Result<Stats> {
    let mut conn = None;
    let mut s = Stats::default();
    let started = Instant::now();
    for mut client in clients {
        let t0 = Instant::now();
        let (status, armed) = console
            .call(&mut conn, "POST", "/api/pairing/arm", None)
            .await?;
        if status != 200 {
            bail!("arm: HTTP {status} {armed}");
        }
        let pin: Pin = armed["pin"]
            .as_str()
            .ok_or_else(|| anyhow!("arm: no pin in {armed}"))?
            .parse()
            .map_err(|_| anyhow!("bad pin"))?;
        match client.pair(addr, &pin).await {
            Ok(session) => {
                session.close().await;
                s.ok += 1;
                s.lat.push(t0.elapsed().as_micros() as u32);
            }
            Err(e) => {
                eprintln!("native pairing failed: {e}");
                s.errors += 1;
            }
        }
    }
    s.elapsed = started.elapsed();
    Ok(s)
}
