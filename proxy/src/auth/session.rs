//! Wallet login: the server issues a single-use nonce, the wallet signs a text naming it and
//! the gateway's audience, and the proxy answers with a bearer token that expires. The token is
//! an HMAC over `wallet:expiry` with the proxy's secret, so any replica holding the secret
//! verifies it without a lookup; the nonce is recorded as used in the shared ledger, so a
//! captured signature cannot log in twice, and it names the audience, so it is useless at
//! another gateway.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Token prefix.
pub const PREFIX: &str = "gws1.";

/// The text a wallet signs to log in with `nonce` at the gateway named `audience`.
pub fn login_message(realm: &str, audience: &str, wallet: &str, nonce: &str) -> String {
    format!("{realm} login\naudience: {audience}\nwallet: {wallet}\nnonce: {nonce}")
}

/// What a login text asks the wallet to sign for: lets a client check the text it is handed
/// before signing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginText {
    pub realm: String,
    pub audience: String,
    pub wallet: String,
    pub nonce: String,
}

/// Reads a text made by [`login_message`]; `None` for anything else.
pub fn parse_login_message(text: &str) -> Option<LoginText> {
    let mut lines = text.split('\n');
    let realm = lines.next()?.strip_suffix(" login")?;
    let audience = lines.next()?.strip_prefix("audience: ")?;
    let wallet = lines.next()?.strip_prefix("wallet: ")?;
    let nonce = lines.next()?.strip_prefix("nonce: ")?;
    if lines.next().is_some() {
        return None;
    }
    Some(LoginText {
        realm: realm.to_owned(),
        audience: audience.to_owned(),
        wallet: wallet.to_owned(),
        nonce: nonce.to_owned(),
    })
}

/// What a session is revoked under in the ledger when its wallet logs out: a hash of the
/// token, so the ledger never holds a usable credential.
pub fn session_id(token: &str) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("session:{hex}")
}

/// Signs and checks session tokens.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        // HMAC accepts a key of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `wallet` valid until `expires_at`. Each is distinct (a random part), so
    /// logging one out never ends another login of the same second.
    pub fn issue(&self, wallet: &str, expires_at: i64) -> String {
        let salt: u64 = rand::random();
        let payload = format!("{wallet}:{expires_at}:{salt:016x}");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The wallet and expiry of a genuine, unexpired token.
    pub fn verify(&self, token: &str, now: i64) -> Option<(String, i64)> {
        let (payload_b64, tag_b64) = token.strip_prefix(PREFIX)?.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok()?;
        self.mac(&payload).verify_slice(&tag).ok()?;
        // `wallet:expiry:salt` (tokens issued before the salt: `wallet:expiry`).
        let mut parts = payload.split(':');
        let (wallet, expires_at) = (parts.next()?, parts.next()?);
        let expires_at: i64 = expires_at.parse().ok()?;
        (expires_at > now).then(|| (wallet.to_owned(), expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_the_secret_and_before_expiry() {
        let signer = TokenSigner::new(b"secret".to_vec());
        let token = signer.issue("Wallet111", 100);
        assert_eq!(signer.verify(&token, 99), Some(("Wallet111".into(), 100)));
        assert_eq!(signer.verify(&token, 100), None);
        assert_eq!(TokenSigner::new(b"other".to_vec()).verify(&token, 0), None);
        let payload = token.split('.').nth(1).unwrap();
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let forged = token.replace(
            payload,
            &URL_SAFE_NO_PAD.encode(text.replace("Wallet111", "Wallet222")),
        );
        assert_eq!(signer.verify(&forged, 0), None);
        assert_ne!(
            signer.issue("Wallet111", 100),
            token,
            "every token is distinct"
        );
    }

    #[test]
    fn a_login_text_names_the_audience_and_reads_back() {
        let text = login_message("LLM gateway", "https://a.example", "Wallet111", "n1");
        assert_eq!(
            text,
            "LLM gateway login\naudience: https://a.example\nwallet: Wallet111\nnonce: n1"
        );
        let read = parse_login_message(&text).unwrap();
        assert_eq!(
            (
                read.audience.as_str(),
                read.wallet.as_str(),
                read.nonce.as_str()
            ),
            ("https://a.example", "Wallet111", "n1")
        );
        assert_eq!(parse_login_message(&format!("{text}\nmore")), None);
        assert_eq!(parse_login_message("LLM gateway delegated key\n{}"), None);
    }
}
