//! The console API

use crate::*;

#[derive(Clone)]
pub(crate) struct Console {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: SslConnector,
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

impl Console {
    pub(crate) async fn login(addr: SocketAddr, password: &str) -> Result<Console> {
        let tls_with = connector(None)?;
        let mut conn = Conn::open(addr, Some(&tls_with)).await?;
        let body = serde_json::json!({ "password": password }).to_string();
        let r = conn
            .roundtrip(&request_bytes(
                "POST",
                "/api/login",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            ))
            .await?;
        if r.status != 200 {
            bail!("login: HTTP {} {}", r.status, r.text());
        }
        let cookie = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| v.split(';').next().filter(|c| c.starts_with("pf_session=")))
            .ok_or_else(|| anyhow!("no session cookie"))?
            .to_owned();
        let csrf = r.json()?["csrf"]
            .as_str()
            .ok_or_else(|| anyhow!("no csrf"))?
            .to_owned();
        Ok(Console {
            addr,
            tls: tls_with,
            cookie,
            csrf,
        })
    }

    /// One API call on `conn` (opened if needed, kept alive).
    pub(crate) async fn call(
        &self,
        conn: &mut Option<Conn>,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        if conn.is_none() {
            *conn = Some(Conn::open(self.addr, Some(&self.tls)).await?);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("Cookie", self.cookie.as_str())];
        if method != "GET" {
            headers.push(("X-CSRF-Token", self.csrf.as_str()));
            headers.push(("Content-Type", "application/json"));
        }
        let req = request_bytes(method, path, &headers, body.as_bytes());
        let r = match conn.as_mut().unwrap().roundtrip(&req).await {
            Ok(r) => r,
            Err(_) => {
                // The server may have closed an idle keep-alive connection.
                *conn = Some(Conn::open(self.addr, Some(&self.tls)).await?);
                conn.as_mut().unwrap().roundtrip(&req).await?
            }
        };
        Ok((r.status, r.json().unwrap_or(serde_json::Value::Null)))
    }
}
