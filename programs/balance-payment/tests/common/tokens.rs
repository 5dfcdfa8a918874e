//! SPL Token and Token-2022 fixtures for the harness: mints (with the Token-2022 extensions
//! the escrow must refuse), plain token accounts, minting, balances, and the token escrow's
//! instructions sent the way an operator and a user would.
use super::{Harness, Wallet};
use anchor_lang::solana_program::{program_pack::Pack, system_instruction};
use anchor_spl::token_2022::spl_token_2022::{
    extension::{
        transfer_fee::instruction::initialize_transfer_fee_config,
        transfer_hook::instruction::initialize as initialize_transfer_hook, ExtensionType,
        StateWithExtensions,
    },
    instruction::{initialize_account3, initialize_mint2, initialize_permanent_delegate, mint_to},
    state::{Account as TokenAccountState, Mint as MintState},
};
use balance_payment::{
    authorization::{Asset, RecoverInfo},
    sdk::{
        authorization::sign_authorization,
        events::ProgramEvent,
        pda,
        token_instructions::{self as tix, TokenRedeemer},
    },
    state::{AcceptedMint, TokenBalance, TokenLock},
};
use solana_sdk::{
    instruction::Instruction,
    pubkey::Pubkey,
    rent::Rent,
    signature::{Keypair, Signer},
    transaction::TransactionError,
};

/// The two token programs the escrow takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenProgram {
    Classic,
    Token2022,
}

impl TokenProgram {
    pub fn id(self) -> Pubkey {
        match self {
            TokenProgram::Classic => anchor_spl::token::ID,
            TokenProgram::Token2022 => anchor_spl::token_2022::ID,
        }
    }
}

/// A Token-2022 mint extension the escrow must refuse.
#[derive(Clone, Copy, Debug)]
pub enum Refused {
    TransferFee,
    TransferHook,
    PermanentDelegate,
}

/// A mint with its authority, for minting test tokens.
pub struct TestMint {
    pub address: Pubkey,
    pub program: TokenProgram,
    pub authority: Keypair,
}

pub const DECIMALS: u8 = 6;

impl Harness {
    /// A new mint of `program` with 6 decimals and, on Token-2022, the `refused` extension.
    pub async fn create_mint(
        &mut self,
        program: TokenProgram,
        refused: Option<Refused>,
    ) -> TestMint {
        let mint = Keypair::new();
        let authority = Keypair::new();
        let token_program = program.id();
        let extensions: Vec<ExtensionType> = refused
            .iter()
            .map(|refused| match refused {
                Refused::TransferFee => ExtensionType::TransferFeeConfig,
                Refused::TransferHook => ExtensionType::TransferHook,
                Refused::PermanentDelegate => ExtensionType::PermanentDelegate,
            })
            .collect();
        let space = if extensions.is_empty() {
            MintState::LEN
        } else {
            ExtensionType::try_calculate_account_len::<MintState>(&extensions).expect("mint length")
        };
        let payer = self.ctx.payer.pubkey();
        let mut instructions = vec![system_instruction::create_account(
            &payer,
            &mint.pubkey(),
            Rent::default().minimum_balance(space),
            space as u64,
            &token_program,
        )];
        let (address, owner) = (mint.pubkey(), authority.pubkey());
        instructions.extend(refused.map(|refused| {
            match refused {
                Refused::TransferFee => initialize_transfer_fee_config(
                    &token_program,
                    &address,
                    Some(&owner),
                    Some(&owner),
                    100,
                    1_000,
                ),
                Refused::TransferHook => {
                    initialize_transfer_hook(&token_program, &address, Some(owner), Some(owner))
                }
                Refused::PermanentDelegate => {
                    initialize_permanent_delegate(&token_program, &address, &owner)
                }
            }
            .expect("extension instruction")
        }));
        instructions.push(
            initialize_mint2(&token_program, &address, &owner, None, DECIMALS).expect("mint"),
        );
        self.send(&instructions, &[&mint])
            .await
            .expect("create mint");
        TestMint {
            address,
            program,
            authority,
        }
    }

    /// A new token account of `mint` owned by `owner`.
    pub async fn token_account(&mut self, mint: &TestMint, owner: &Pubkey) -> Pubkey {
        let account = Keypair::new();
        let payer = self.ctx.payer.pubkey();
        let space = TokenAccountState::LEN;
        let token_program = mint.program.id();
        let instructions = [
            system_instruction::create_account(
                &payer,
                &account.pubkey(),
                Rent::default().minimum_balance(space),
                space as u64,
                &token_program,
            ),
            initialize_account3(&token_program, &account.pubkey(), &mint.address, owner)
                .expect("account"),
        ];
        self.send(&instructions, &[&account])
            .await
            .expect("token account");
        account.pubkey()
    }

    pub async fn mint_to(&mut self, mint: &TestMint, to: &Pubkey, amount: u64) {
        let authority = mint.authority.insecure_clone();
        let instruction = mint_to(
            &mint.program.id(),
            &mint.address,
            to,
            &authority.pubkey(),
            &[],
            amount,
        )
        .expect("mint to");
        self.send(&[instruction], &[&authority])
            .await
            .expect("mint");
    }

    /// The amount a token account holds (0 when it does not exist).
    pub async fn tokens(&mut self, account: &Pubkey) -> u64 {
        match self.raw(account).await {
            Some(data) => {
                StateWithExtensions::<TokenAccountState>::unpack(&data)
                    .expect("token account")
                    .base
                    .amount
            }
            None => 0,
        }
    }

    /// Namespace `namespace_id`'s authority lists `mint`.
    pub async fn accept_mint(
        &mut self,
        authority: &Keypair,
        namespace_id: u64,
        mint: &Pubkey,
    ) -> Result<Vec<ProgramEvent>, TransactionError> {
        let instruction = tix::accept_mint(authority.pubkey(), namespace_id, *mint);
        self.send(&[instruction], &[authority]).await
    }

    /// This harness's namespace accepts a new mint of `program`; its treasury gets a token
    /// account of it.
    pub async fn accepted_mint(&mut self, program: TokenProgram) -> (TestMint, Pubkey) {
        let mint = self.create_mint(program, None).await;
        let authority = self.authority.insecure_clone();
        self.accept_mint(&authority, self.namespace_id, &mint.address)
            .await
            .expect("accept mint");
        let treasury = self.treasury;
        let treasury_tokens = self.token_account(&mint, &treasury).await;
        (mint, treasury_tokens)
    }

    /// A registered user with a vault of `mint` holding `deposit` tokens (deposited from a
    /// token account of their own, which is returned too).
    pub async fn user_with_tokens(&mut self, mint: &TestMint, deposit: u64) -> (Wallet, Pubkey) {
        let user = self.user_with_deposit(0).await;
        let own = self.token_account(mint, &user.pubkey()).await;
        self.mint_to(mint, &own, deposit).await;
        let open = tix::open_token_vault(
            user.pubkey(),
            user.pubkey(),
            mint.address,
            self.namespace_id,
            mint.program.id(),
        );
        let deposit_ix = tix::deposit_token(
            user.pubkey(),
            own,
            user.pubkey(),
            mint.address,
            mint.program.id(),
            deposit,
        );
        self.send(&[open, deposit_ix], &[&user.keypair])
            .await
            .expect("open and deposit");
        (user, own)
    }

    pub async fn token_balance(&mut self, user: &Pubkey, mint: &Pubkey) -> Option<TokenBalance> {
        self.decode(&pda::token_balance(user, mint)).await
    }

    pub async fn token_lock(&mut self, user: &Pubkey, nonce: u64) -> Option<TokenLock> {
        self.decode(&pda::token_lock(user, nonce)).await
    }

    pub async fn listing(&mut self, namespace_id: u64, mint: &Pubkey) -> Option<AcceptedMint> {
        self.decode(&pda::accepted_mint(namespace_id, mint)).await
    }

    pub async fn vault_tokens(&mut self, user: &Pubkey, mint: &Pubkey) -> u64 {
        self.tokens(&pda::token_vault(user, mint)).await
    }

    /// How this harness's bot redeems in `mint`, paying into `treasury_tokens`.
    pub fn redeemer(&self, mint: &TestMint, treasury_tokens: Pubkey) -> TokenRedeemer {
        TokenRedeemer {
            bot: self.bot.pubkey(),
            namespace_id: self.namespace_id,
            mint: mint.address,
            token_program: mint.program.id(),
            treasury_tokens,
        }
    }

    /// The user signs, for their current nonce, an authorisation to spend `max_amount` of
    /// `asset`.
    pub async fn authorize_in(
        &mut self,
        wallet: &Wallet,
        asset: Asset,
        max_amount: u64,
    ) -> RecoverInfo {
        let terms = self.terms(&wallet.pubkey(), max_amount).await;
        sign_authorization(
            &wallet.signing_key,
            &balance_payment::authorization::AuthorizationTerms { asset, ..terms },
        )
    }

    /// Sends `instructions` signed by the bot.
    pub async fn as_bot(
        &mut self,
        instructions: &[Instruction],
    ) -> Result<Vec<ProgramEvent>, TransactionError> {
        let bot = self.bot.insecure_clone();
        self.send(instructions, &[&bot]).await
    }
}
