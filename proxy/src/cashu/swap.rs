//! Swaps at a mint, each written down before it is sent (inputs, and outputs with their
//! secrets and blinding factors) and finished in one ledger transaction after the mint signs.
//! A swap left pending (a crash, a mint that did not answer) is sent again as it was; if the
//! mint already did it, its signatures are restored (NUT-09) from the same outputs, so neither
//! the customer's payment nor their change is ever lost.
use super::{Cashu, CashuError, Keysets, Mint};
use cdk::{
    dhke::{blind_message, construct_proofs},
    nuts::{
        BlindSignature, BlindedMessage, CurrencyUnit, Id, PreMint, PreMintSecrets, Proof, Proofs,
        PublicKey, RestoreRequest, SecretKey, SwapRequest, Token,
    },
    secret::Secret,
    wallet::MintConnector,
    Amount,
};
use indexer::ledger::{
    CashuProof, CashuSwap, Ledger, LedgerError, NewReceipt, Receipt, Receiving, SwapKind,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A customer's token on its way in.
pub(super) struct Incoming<'a> {
    pub receipt_id: &'a str,
    pub user: &'a str,
    pub request_id: Option<&'a str>,
    pub proofs: Proofs,
    pub net: u64,
    pub fee: u64,
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
/// whose receipt is unfinished (sent before, mint unanswered) finishes that swap instead.
pub(super) async fn receive(
    cashu: &Cashu,
    ledger: &Ledger,
    mint: &Mint,
    keysets: &Keysets,
    incoming: Incoming<'_>,
) -> Result<Receipt, CashuError> {
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
        request_id: incoming.request_id,
        sats: i64::try_from(incoming.net).map_err(|_| CashuError::TooMuch(incoming.net))?,
        fee: swap.fee,
        tokens_per_sat: cashu.tokens_per_sat,
    };
    match ledger.cashu_begin_receive(&receipt, &swap).await? {
        Receiving::Started => resume(ledger, mint, &swap).await?,
        Receiving::Known(known) if known.received => return Err(CashuError::AlreadyReceived),
        Receiving::Known(_) => match ledger.cashu_swap(&swap.id).await? {
            Some((pending, false, _)) => resume(ledger, mint, &pending).await?,
            _ => return Err(CashuError::AlreadyReceived),
        },
    }
    ledger
        .cashu_receipt(incoming.receipt_id)
        .await?
        .ok_or(CashuError::UnknownReceipt)
}

/// Pays `sats` out of the gateway's ecash at `mint` as a new token (change for `receipt_id`,
/// or a withdrawal), under the swap id `id`: the same id never pays twice.
pub(super) async fn pay_out(
    ledger: &Ledger,
    mint: &Mint,
    id: &str,
    sats: i64,
    receipt_id: Option<&str>,
) -> Result<Option<String>, CashuError> {
    if let Some((swap, done, token)) = ledger.cashu_swap(id).await? {
        if done {
            return Ok(token);
        }
        if swap.outputs.is_some() {
            resume(ledger, mint, &swap).await?;
            return paid_token(ledger, id).await;
        }
        // Written down but never sent: start over.
        ledger.cashu_abandon_spend(id).await?;
    }
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
    // Concurrent spends (replicas on Postgres) may choose the same proofs: choose again.
    let mut attempts = 0;
    let spend = loop {
        match ledger
            .cashu_begin_spend(&swap, sats, fee_ppk, kind == SwapKind::Change)
            .await
        {
            Err(LedgerError::Contended) if attempts < 8 => attempts += 1,
            spend => break spend?,
        }
    };
    let total: i64 = spend.proofs.iter().map(|proof| proof.amount).sum();
    let mut outputs = written(&keysets.outputs(spend.paid as u64)?, true);
    let keep = total - spend.paid - spend.fee;
    if keep > 0 {
        outputs.extend(written(&keysets.outputs(keep as u64)?, false));
    }
    let outputs = json(&outputs)?;
    ledger.cashu_swap_outputs(id, &outputs).await?;
    let swap = CashuSwap {
        inputs: json(&spend.proofs)?,
        outputs: Some(outputs),
        fee: spend.fee,
        paid_sats: spend.paid,
        ..swap
    };
    resume(ledger, mint, &swap).await?;
    paid_token(ledger, id).await
}

async fn paid_token(ledger: &Ledger, id: &str) -> Result<Option<String>, CashuError> {
    match ledger.cashu_swap(id).await? {
        Some((_, true, token)) => Ok(token),
        _ => Err(CashuError::Internal(format!("swap {id} did not finish"))),
    }
}

/// Sends a written-down swap (again) and finishes it in the ledger.
pub(super) async fn resume(
    ledger: &Ledger,
    mint: &Mint,
    swap: &CashuSwap,
) -> Result<(), CashuError> {
    let Some(outputs) = &swap.outputs else {
        ledger.cashu_abandon_spend(&swap.id).await?;
        return Ok(());
    };
    let outputs: Vec<Output> = parse(outputs)?;
    let premint = premint(&outputs)?;
    let inputs = match swap.kind {
        SwapKind::Receive => parse::<Proofs>(&swap.inputs)?,
        _ => parse::<Vec<CashuProof>>(&swap.inputs)?
            .iter()
            .map(to_proof)
            .collect::<Result<_, _>>()?,
    };
    let forget = |reason: String| async move {
        match swap.kind {
            SwapKind::Receive => {
                let receipt = swap.id.trim_start_matches("receive:");
                ledger.cashu_forget_receive(receipt, &swap.id).await?;
            }
            _ => ledger.cashu_abandon_spend(&swap.id).await?,
        }
        Err::<Vec<BlindSignature>, _>(CashuError::Refused(reason))
    };
    let request = SwapRequest::new(inputs, premint.blinded_messages());
    let signatures = match mint.client.post_swap(request).await {
        Ok(response) => response.signatures,
        Err(cdk::Error::TokenAlreadySpent | cdk::Error::BlindedMessageAlreadySigned) => {
            // Spent: by this very swap before a crash (its signatures can be restored), or
            // elsewhere (nothing to restore).
            let restored = mint
                .client
                .post_restore(RestoreRequest {
                    outputs: premint.blinded_messages(),
                })
                .await
                .map_err(|e| CashuError::MintUnreachable(e.to_string()))?;
            match in_order(&premint, restored.outputs, restored.signatures) {
                Some(signatures) => signatures,
                None => forget("the token was already spent".into()).await?,
            }
        }
        Err(error @ cdk::Error::TokenPending) => forget(error.to_string()).await?,
        Err(error @ (cdk::Error::InactiveKeyset | cdk::Error::UnknownKeySet)) => {
            // Outputs for a keyset the mint retired: fetch its keys again for the next try.
            mint.forget_keysets().await;
            forget(error.to_string()).await?
        }
        Err(error) if error.is_definitive_failure() => forget(error.to_string()).await?,
        Err(error) => return Err(CashuError::MintUnreachable(error.to_string())),
    };
    let keysets = mint.keysets().await?;
    let keys = keysets
        .keys
        .get(&premint.keyset_id)
        .ok_or_else(|| CashuError::Internal("the mint's keyset changed during a swap".into()))?;
    let proofs = construct_proofs(signatures, premint.rs(), premint.secrets(), keys)?;
    match swap.kind {
        SwapKind::Receive => {
            let receipt = swap.id.trim_start_matches("receive:");
            let kept: Vec<CashuProof> = proofs.iter().map(from_proof).collect();
            ledger
                .cashu_finish_receive(receipt, &swap.id, &kept)
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
