//! Finding this program's events in a transaction as the Solana RPC returns it
//! (`getTransaction`, `json` encoding).
//!
//! Events come from `emit_cpi!`: inner instructions *to this program* whose data starts with
//! the event-CPI tag. Only this program can sign such a self-invocation (its event authority
//! is a PDA), so an inner instruction to any other program carrying the same bytes is ignored.
//! `Program data:` log lines written while this program is executing (`emit!`) are accepted
//! too. Failed transactions have no events.
use balance_payment::sdk::events::{decode_event, decode_logged_event, ProgramEvent};
use base64::Engine;
use solana_transaction_status_client_types::{
    option_serializer::OptionSerializer, EncodedConfirmedTransactionWithStatusMeta,
    EncodedTransaction, UiInstruction, UiMessage,
};

/// The program's events in `tx`, in execution order.
pub fn events_in_transaction(
    tx: &EncodedConfirmedTransactionWithStatusMeta,
    program_id: &str,
) -> Vec<ProgramEvent> {
    let Some(meta) = &tx.transaction.meta else {
        return Vec::new();
    };
    if meta.err.is_some() {
        return Vec::new();
    }
    let keys = account_keys(tx);
    let mut events = Vec::new();
    if let OptionSerializer::Some(groups) = &meta.inner_instructions {
        for group in groups {
            for instruction in &group.instructions {
                let (program, data) = match instruction {
                    UiInstruction::Compiled(ix) => {
                        (keys.get(ix.program_id_index as usize).map(String::as_str), ix.data.as_str())
                    }
                    UiInstruction::Parsed(solana_transaction_status_client_types::UiParsedInstruction::PartiallyDecoded(ix)) => {
                        (Some(ix.program_id.as_str()), ix.data.as_str())
                    }
                    UiInstruction::Parsed(_) => continue,
                };
                if program != Some(program_id) {
                    continue;
                }
                if let Some(event) = bs58::decode(data)
                    .into_vec()
                    .ok()
                    .and_then(|bytes| decode_event(&bytes))
                {
                    events.push(event);
                }
            }
        }
    }
    if events.is_empty() {
        if let OptionSerializer::Some(logs) = &meta.log_messages {
            events.extend(events_in_logs(logs, program_id));
        }
    }
    events
}

/// Static account keys followed by those loaded from lookup tables, as instructions index them.
fn account_keys(tx: &EncodedConfirmedTransactionWithStatusMeta) -> Vec<String> {
    let mut keys = match &tx.transaction.transaction {
        EncodedTransaction::Json(ui) => match &ui.message {
            UiMessage::Raw(message) => message.account_keys.clone(),
            UiMessage::Parsed(message) => message
                .account_keys
                .iter()
                .map(|a| a.pubkey.clone())
                .collect(),
        },
        other => other
            .decode()
            .map(|vtx| {
                vtx.message
                    .static_account_keys()
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    };
    if let Some(OptionSerializer::Some(loaded)) =
        tx.transaction.meta.as_ref().map(|m| &m.loaded_addresses)
    {
        keys.extend(loaded.writable.iter().cloned());
        keys.extend(loaded.readonly.iter().cloned());
    }
    keys
}

/// `Program data:` lines logged while `program_id` is the executing program.
pub fn events_in_logs(logs: &[String], program_id: &str) -> Vec<ProgramEvent> {
    let mut stack: Vec<&str> = Vec::new();
    let mut events = Vec::new();
    for line in logs {
        if let Some(rest) = line.strip_prefix("Program ") {
            if let Some(data) = rest.strip_prefix("data: ") {
                if stack.last() == Some(&program_id) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(data.trim())
                        .ok();
                    events.extend(bytes.and_then(|b| decode_logged_event(&b)));
                }
            } else if let Some((program, tail)) = rest.split_once(' ') {
                if tail.starts_with("invoke [") {
                    stack.push(program);
                } else if tail == "success" || tail.starts_with("failed") {
                    stack.pop();
                }
            }
        }
    }
    events
}
