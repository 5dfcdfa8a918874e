//! Swaps at a mint, each written down before it is sent (inputs, and outputs with their
//! secrets and blinding factors) and finished in one ledger transaction after the mint signs.
//! One caller at a time sends a swap: the holder of its lease in the ledger, so two copies of
//! a token, two replicas or the recovery loop never race at the mint. An answer that is not
//! final (the mint's "pending", a timeout, a cut connection) keeps the swap for the next
//! holder, who sends it again as it was; if the mint already did it, its signatures are
//! restored (NUT-09) from the same outputs. Only the mint's final refusal forgets a swap, so
//! neither the customer's payment nor their change is ever lost.
use super::{Cashu, CashuError, Keysets, Mint};
use cdk::{
    dhke::{blind_message, construct_proofs},
    nuts::{
        BlindSignature, BlindedMessage, CheckStateRequest, CurrencyUnit, Id, PreMint,
        PreMintSecrets, Proof, Proofs, PublicKey, RestoreRequest, SecretKey, State, SwapRequest,
        Token,
    },
    secret::Secret,
    wallet::MintConnector,
    Amount,
};
use ledger::{
    CashuProof, CashuSwap, Leased, Ledger, LedgerError, NewReceipt, Receipt, Receiving, SwapKind,
    SwapLease,
};
use serde::{Deserialize, Serialize};
use std::{str::FromStr, time::Duration};
use tokio::time::Instant;

/// The longest one exchange with the mint may take; past it the outcome is unknown.
const MINT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller holds a swap's lease: longer than the exchanges it makes under it (a
/// swap, a restore, a state check: three [`MINT_TIMEOUT`]s), so a lease lapses only when its
/// holder died.
const LEASE_SECONDS: i64 = 60;
/// How long a claim of change waits for another caller sending its swap, before answering
/// "in progress": long enough for a mint's usual answer.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(5);

/// A caller sending swaps: its own name for their leases, for this one call, and the request
/// it receives a token for, if any (a receipt it finishes is that request's).
struct Sender {
    owner: String,
    request_id: Option<String>,
}

impl Sender {
    fn new() -> Self {
        Self::for_request(None)
    }

    fn for_request(request_id: Option<&str>) -> Self {
        Self {
            owner: uuid::Uuid::new_v4().simple().to_string(),
            request_id: request_id.map(str::to_owned),
        }
    }

    fn lease(&self) -> SwapLease<'_> {
        SwapLease {
            owner: &self.owner,
            seconds: LEASE_SECONDS,
        }
    }
}

/// A customer's token on its way in.
pub(super) struct Incoming<'a> {
    pub receipt_id: &'a str,
    pub user: &'a str,
    /// The request the token pays for (none for a top-up).
    pub request_id: Option<&'a str>,
    pub proofs: Proofs,
    pub net: u64,
    pub fee: u64,
}

/// How a token's receipt came to be received.
pub enum Received {
    /// By this call (sent now, or a swap left unfinished that this call finished).
    Now(Receipt),
    /// Before this call.
    Before(Receipt),
}

/// One output of a swap, as written down: enough to blind it again and unblind its signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Output {
    amount: u64,
    keyset: String,
    secret: String,
    r: String,
    /// Paid out (change, withdrawal) rather than kept by the gateway.
    pay: bool,
}

/// Receives a customer's token: writes the receipt and its swap down, then swaps. A token
/// whose receipt is unfinished (sent before, mint unanswered) finishes that swap instead,
/// unless another caller is sending it (then: in progress, try again).
pub(super) async fn receive(
    cashu: &Cashu,
    ledger: &Ledger,
    mint: &Mint,
    keysets: &Keysets,
    incoming: Incoming<'_>,
) -> Result<Received, CashuError> {
    let outputs = keysets.outputs(incoming.net)?;
    let swap = CashuSwap {
        id: format!("receive:{}", incoming.receipt_id),
        kind: SwapKind::Receive,
        mint: mint.url.to_string(),
        inputs: json(&incoming.proofs)?,
        outputs: Some(json(&written(&outputs, false))?),
        fee: i64::try_from(incoming.fee).unwrap_or(i64::MAX),
        paid_sats: 0,
    };
    let receipt = NewReceipt {
        id: incoming.receipt_id,
        mint: &swap.mint,
        user: incoming.user,
        sats: i64::try_from(incoming.net).map_err(|_| CashuError::TooMuch(incoming.net))?,
        fee: swap.fee,
        tokens_per_sat: cashu.tokens_per_sat,
    };
    let sender = Sender::for_request(incoming.request_id);
    match ledger
        .cashu_begin_receive(&receipt, &swap, sender.lease())
        .await?
    {
        Receiving::Started => send(ledger, mint, &swap, &sender).await?,
        Receiving::Known(known) if known.received => return Ok(Received::Before(known)),
        Receiving::Known(_) => match ledger.cashu_lease_swap(&swap.id, sender.lease()).await? {
            Leased::Taken(pending) => send(ledger, mint, &pending, &sender).await?,
            Leased::Done => {
                let receipt = ledger.cashu_receipt(incoming.receipt_id).await?;
                return receipt.map(Received::Before).ok_or(CashuError::InProgress);
            }
            Leased::Busy | Leased::Gone => return Err(CashuError::InProgress),
        },
    }
    ledger
        .cashu_receipt(incoming.receipt_id)
        .await?
        .map(Received::Now)
        .ok_or(CashuError::UnknownReceipt)
}

/// Pays `sats` out of the gateway's ecash at `mint` as a new token (change for `receipt_id`,
/// or a withdrawal), under the swap id `id`: the same id never pays twice. While another
/// caller sends that swap, waits for its outcome (a little while) and answers the same token.
pub(super) async fn pay_out(
    ledger: &Ledger,
    mint: &Mint,
    id: &str,
    sats: i64,
    receipt_id: Option<&str>,
) -> Result<Option<String>, CashuError> {
    let sender = Sender::new();
    let give_up = Instant::now() + WAIT_FOR_OTHERS;
    loop {
        match ledger.cashu_lease_swap(id, sender.lease()).await? {
            Leased::Done => return paid_token(ledger, id).await,
            Leased::Taken(swap) if swap.outputs.is_some() => {
                send(ledger, mint, &swap, &sender).await?;
                return paid_token(ledger, id).await;
            }
            // Written down but never sent, by a caller that died: start over.
            Leased::Taken(_) => {
                ledger.cashu_abandon_spend(id, &sender.owner, &[]).await?;
            }
            Leased::Busy => wait_for_others(give_up).await?,
            Leased::Gone => {
                match begin_pay_out(ledger, mint, id, sats, receipt_id, &sender).await {
                    // Another caller wrote this swap, took the same proofs, or holds the proofs
                    // needed in a swap that will give them back: look again shortly.
                    Err(CashuError::Ledger(LedgerError::Contended)) => {
                        wait_for_others(give_up).await?
                    }
                    result => return result,
                }
            }
        }
    }
}

/// Waits a moment for another caller's swap, or says "in progress" once `give_up` is past.
async fn wait_for_others(give_up: Instant) -> Result<(), CashuError> {
    if Instant::now() >= give_up {
        return Err(CashuError::InProgress);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

/// Chooses the proofs for a new payout swap, writes it and its outputs down, and sends it.
async fn begin_pay_out(
    ledger: &Ledger,
    mint: &Mint,
    id: &str,
    sats: i64,
    receipt_id: Option<&str>,
    sender: &Sender,
) -> Result<Option<String>, CashuError> {
    let keysets = mint.keysets().await?;
    let kind = match receipt_id {
        Some(_) => SwapKind::Change,
        None => SwapKind::Withdraw,
    };
    let swap = CashuSwap {
        id: id.to_owned(),
        kind,
        mint: mint.url.to_string(),
        inputs: String::new(),
        outputs: None,
        fee: 0,
        paid_sats: sats,
    };
    let fee_ppk = i64::try_from(keysets.fee_ppk(&keysets.active)).unwrap_or(i64::MAX);
    let spend = ledger
        .cashu_begin_spend(
            &swap,
            sats,
            fee_ppk,
            kind == SwapKind::Change,
            sender.lease(),
        )
        .await?;
    let total: i64 = spend.proofs.iter().map(|proof| proof.amount).sum();
    let mut outputs = written(&keysets.outputs(spend.paid as u64)?, true);
    let keep = total - spend.paid - spend.fee;
    if keep > 0 {
        outputs.extend(written(&keysets.outputs(keep as u64)?, false));
    }
    let outputs = json(&outputs)?;
    if !ledger
        .cashu_swap_outputs(id, &outputs, &sender.owner)
        .await?
    {
        return Err(CashuError::InProgress);
    }
    let swap = CashuSwap {
        inputs: json(&spend.proofs)?,
        outputs: Some(outputs),
        fee: spend.fee,
        paid_sats: spend.paid,
        ..swap
    };
    send(ledger, mint, &swap, sender).await?;
    paid_token(ledger, id).await
}

async fn paid_token(ledger: &Ledger, id: &str) -> Result<Option<String>, CashuError> {
    match ledger.cashu_swap(id).await? {
        Some((_, true, token)) => Ok(token),
        _ => Err(CashuError::InProgress),
    }
}

/// Finishes a swap left pending (a crash, an unanswered mint) if no one else is sending it:
/// true when it was finished now.
pub(super) async fn finish_pending(
    ledger: &Ledger,
    mint: &Mint,
    id: &str,
) -> Result<bool, CashuError> {
    let sender = Sender::new();
    match ledger.cashu_lease_swap(id, sender.lease()).await? {
        Leased::Taken(swap) if swap.outputs.is_some() => {
            send(ledger, mint, &swap, &sender).await?;
            Ok(true)
        }
        // Never sent: nothing reached the mint; its proofs go back.
        Leased::Taken(_) => {
            ledger.cashu_abandon_spend(id, &sender.owner, &[]).await?;
            Ok(false)
        }
        Leased::Busy => Err(CashuError::InProgress),
        Leased::Done | Leased::Gone => Ok(false),
    }
}

/// Like [`finish_pending`], but while another caller is sending the swap, waits (a little
/// while) for its outcome: for a customer asking after their token.
pub(super) async fn finish_or_wait(
    ledger: &Ledger,
    mint: &Mint,
    id: &str,
) -> Result<(), CashuError> {
    let give_up = Instant::now() + WAIT_FOR_OTHERS;
    loop {
        match finish_pending(ledger, mint, id).await {
            Err(CashuError::InProgress) => wait_for_others(give_up).await?,
            result => return result.map(|_| ()),
        }
    }
}

/// Sends a written-down swap whose lease `sender` holds (again) and finishes it in the
/// ledger. The mint's final refusal forgets it; any other failure keeps it and gives the
/// lease back, for the next caller to send again.
async fn send(
    ledger: &Ledger,
    mint: &Mint,
    swap: &CashuSwap,
    sender: &Sender,
) -> Result<(), CashuError> {
    let outputs: Vec<Output> = parse(swap.outputs.as_deref().unwrap_or("[]"))?;
    let premint = premint(&outputs)?;
    let inputs = match swap.kind {
        SwapKind::Receive => parse::<Proofs>(&swap.inputs)?,
        _ => parse::<Vec<CashuProof>>(&swap.inputs)?
            .iter()
            .map(to_proof)
            .collect::<Result<_, _>>()?,
    };
    let request = SwapRequest::new(inputs.clone(), premint.blinded_messages());
    let answer = tokio::time::timeout(MINT_TIMEOUT, mint.client.post_swap(request))
        .await
        .unwrap_or(Err(cdk::Error::Timeout));
    let signatures = match answer {
        Ok(response) => response.signatures,
        Err(cdk::Error::TokenAlreadySpent | cdk::Error::BlindedMessageAlreadySigned) => {
            // Spent: by this very swap before its answer was lost (its signatures can be
            // restored), or elsewhere (nothing to restore).
            match restore(mint, &premint).await {
                Ok(Some(signatures)) => signatures,
                Ok(None) => match spent_inputs(mint, swap.kind, &inputs).await {
                    Ok(spent) => {
                        return refuse(ledger, swap, sender, "the token was already spent", &spent)
                            .await
                    }
                    Err(error) => return unknown(ledger, swap, sender, error).await,
                },
                Err(error) => return unknown(ledger, swap, sender, error).await,
            }
        }
        Err(error @ (cdk::Error::InactiveKeyset | cdk::Error::UnknownKeySet)) => {
            // Outputs for a keyset the mint retired: fetch its keys again for the next try.
            mint.forget_keysets().await;
            return refuse(ledger, swap, sender, &error.to_string(), &[]).await;
        }
        Err(error) if error.is_definitive_failure() => {
            return refuse(ledger, swap, sender, &error.to_string(), &[]).await
        }
        Err(cdk::Error::TokenPending) => {
            return unknown(ledger, swap, sender, CashuError::InProgress).await
        }
        Err(error) => {
            return unknown(
                ledger,
                swap,
                sender,
                CashuError::MintUnreachable(error.to_string()),
            )
            .await
        }
    };
    let keysets = mint.keysets().await?;
    let keys = keysets
        .keys
        .get(&premint.keyset_id)
        .ok_or_else(|| CashuError::Internal("the mint's keyset changed during a swap".into()))?;
    let proofs = construct_proofs(signatures, premint.rs(), premint.secrets(), keys)?;
    match swap.kind {
        SwapKind::Receive => {
            let kept: Vec<CashuProof> = proofs.iter().map(from_proof).collect();
            ledger
                .cashu_finish_receive(
                    receipt_of(swap),
                    &swap.id,
                    &kept,
                    sender.request_id.as_deref(),
                )
                .await?;
        }
        SwapKind::Change | SwapKind::Withdraw => {
            let (mut paid, mut kept) = (Proofs::new(), Vec::new());
            for (proof, output) in proofs.into_iter().zip(&outputs) {
                match output.pay {
                    true => paid.push(proof),
                    false => kept.push(from_proof(&proof)),
                }
            }
            let token = Token::new(mint.url.clone(), paid, None, CurrencyUnit::Sat).to_string();
            let receipt = swap.id.strip_prefix("change:");
            ledger
                .cashu_finish_spend(swap, &kept, &token, receipt)
                .await?;
        }
    }
    Ok(())
}

/// The receipt a receiving swap is for.
fn receipt_of(swap: &CashuSwap) -> &str {
    swap.id.trim_start_matches("receive:")
}

/// The mint refused the swap for good: forgets it (a receipt: nothing credited; a payout:
/// its proofs back, but for those the mint says are spent). Only the lease's holder forgets:
/// anyone else's answer is "in progress".
async fn refuse(
    ledger: &Ledger,
    swap: &CashuSwap,
    sender: &Sender,
    reason: &str,
    spent: &[String],
) -> Result<(), CashuError> {
    let forgotten = match swap.kind {
        SwapKind::Receive => {
            ledger
                .cashu_forget_receive(receipt_of(swap), &swap.id, &sender.owner)
                .await?
        }
        _ => {
            ledger
                .cashu_abandon_spend(&swap.id, &sender.owner, spent)
                .await?
        }
    };
    tracing::info!(swap = %swap.id, reason, forgotten, "the mint refused a swap");
    match forgotten {
        true => Err(CashuError::Refused(reason.to_owned())),
        false => Err(CashuError::InProgress),
    }
}

/// The mint's answer was not final: the swap stays as written, and its lease is given back so
/// the next caller (a retry, the recovery loop) sends it again.
async fn unknown(
    ledger: &Ledger,
    swap: &CashuSwap,
    sender: &Sender,
    error: CashuError,
) -> Result<(), CashuError> {
    tracing::warn!(swap = %swap.id, %error, "a swap's outcome is unknown; it is kept to send again");
    ledger.cashu_release_swap(&swap.id, &sender.owner).await?;
    Err(error)
}

/// The signatures the mint already gave these outputs, if it signed them all.
async fn restore(
    mint: &Mint,
    premint: &PreMintSecrets,
) -> Result<Option<Vec<BlindSignature>>, CashuError> {
    let request = RestoreRequest {
        outputs: premint.blinded_messages(),
    };
    let restored = tokio::time::timeout(MINT_TIMEOUT, mint.client.post_restore(request))
        .await
        .unwrap_or(Err(cdk::Error::Timeout))
        .map_err(|e| CashuError::MintUnreachable(e.to_string()))?;
    Ok(in_order(premint, restored.outputs, restored.signatures))
}

/// The secrets of a payout's inputs that the mint says are spent (NUT-07), so they are never
/// offered again. A customer's proofs are not the gateway's: nothing to record.
async fn spent_inputs(
    mint: &Mint,
    kind: SwapKind,
    inputs: &Proofs,
) -> Result<Vec<String>, CashuError> {
    if kind == SwapKind::Receive {
        return Ok(Vec::new());
    }
    let unreachable = |e: cdk::Error| CashuError::MintUnreachable(e.to_string());
    let ys = inputs.iter().map(Proof::y).collect::<Result<Vec<_>, _>>()?;
    let states = tokio::time::timeout(
        MINT_TIMEOUT,
        mint.client
            .post_check_state(CheckStateRequest { ys: ys.clone() }),
    )
    .await
    .unwrap_or(Err(cdk::Error::Timeout))
    .map_err(unreachable)?;
    Ok(inputs
        .iter()
        .zip(&ys)
        .filter(|(_, y)| {
            states
                .states
                .iter()
                .any(|state| state.y == **y && state.state == State::Spent)
        })
        .map(|(proof, _)| proof.secret.to_string())
        .collect())
}

/// The restored signatures in the order of `premint`'s outputs, if the mint had signed all.
fn in_order(
    premint: &PreMintSecrets,
    outputs: Vec<BlindedMessage>,
    signatures: Vec<BlindSignature>,
) -> Option<Vec<BlindSignature>> {
    let signed: Vec<(PublicKey, BlindSignature)> = outputs
        .into_iter()
        .map(|output| output.blinded_secret)
        .zip(signatures)
        .collect();
    premint
        .secrets
        .iter()
        .map(|pre| {
            signed
                .iter()
                .find(|(blinded, _)| *blinded == pre.blinded_message.blinded_secret)
                .map(|(_, signature)| signature.clone())
        })
        .collect()
}

fn written(premint: &PreMintSecrets, pay: bool) -> Vec<Output> {
    premint
        .secrets
        .iter()
        .map(|pre| Output {
            amount: u64::from(pre.amount),
            keyset: premint.keyset_id.to_string(),
            secret: pre.secret.to_string(),
            r: pre.r.to_secret_hex(),
            pay,
        })
        .collect()
}

/// The outputs as they were first blinded (same secrets, same blinding factors).
fn premint(outputs: &[Output]) -> Result<PreMintSecrets, CashuError> {
    let bad = |e: String| CashuError::Internal(format!("a written-down output: {e}"));
    let keyset_id = match outputs.first() {
        Some(output) => Id::from_str(&output.keyset).map_err(|e| bad(e.to_string()))?,
        None => return Err(bad("no outputs".into())),
    };
    let mut secrets = Vec::with_capacity(outputs.len());
    for output in outputs {
        let secret = Secret::from_str(&output.secret).map_err(|e| bad(e.to_string()))?;
        let r = SecretKey::from_hex(&output.r).map_err(|e| bad(e.to_string()))?;
        let (blinded, r) = blind_message(&secret.to_bytes(), Some(r))?;
        let amount = Amount::from(output.amount);
        secrets.push(PreMint {
            blinded_message: BlindedMessage::new(amount, keyset_id, blinded),
            secret,
            r,
            amount,
            derivation_index: None,
        });
    }
    Ok(PreMintSecrets { secrets, keyset_id })
}

fn to_proof(proof: &CashuProof) -> Result<Proof, CashuError> {
    let bad = |e: String| CashuError::Internal(format!("a stored proof: {e}"));
    Ok(Proof::new(
        Amount::from(u64::try_from(proof.amount).map_err(|e| bad(e.to_string()))?),
        Id::from_str(&proof.keyset_id).map_err(|e| bad(e.to_string()))?,
        Secret::from_str(&proof.secret).map_err(|e| bad(e.to_string()))?,
        PublicKey::from_hex(&proof.c).map_err(|e| bad(e.to_string()))?,
    ))
}

fn from_proof(proof: &Proof) -> CashuProof {
    CashuProof {
        secret: proof.secret.to_string(),
        keyset_id: proof.keyset_id.to_string(),
        amount: i64::try_from(u64::from(proof.amount)).unwrap_or(i64::MAX),
        c: proof.c.to_hex(),
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, CashuError> {
    serde_json::to_string(value).map_err(|e| CashuError::Internal(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, CashuError> {
    serde_json::from_str(text).map_err(|e| CashuError::Internal(format!("a stored swap: {e}")))
}
