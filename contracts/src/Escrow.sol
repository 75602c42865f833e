// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {AttestationRegistry} from "./AttestationRegistry.sol";

/**
 * @title Escrow
 * @notice Pay-per-inference escrow of depinfer: payers deposit ETH, the edge debits them per
 * attested batch of jobs, and everyone who earned from those jobs (providers, model
 * developers, the protocol) claims with a Merkle proof of their cumulative earnings.
 *
 * Flow:
 * 1. A payer calls `deposit()` (or anyone calls `depositFor(payer)`). The edge ties API keys to
 *    the payer address and reserves each job's price against `availableBalance(payer)` off-chain
 *    (in D1) before sending the job; a failed job's reservation is simply released off-chain.
 * 2. When a batch of attestations has been posted to `AttestationRegistry`, a `SETTLER_ROLE`
 *    account calls `settleBatch(attestationRoot, payers, amounts, payoutRoot, payoutTotal)`:
 *    each `payers[i]` is debited `amounts[i]` (the sum of the prices of its jobs in the batch;
 *    a payer may appear more than once), and the debited wei move into the payout pool.
 * 3. `payoutRoot` is the root of an OpenZeppelin `StandardMerkleTree` over
 *    `(address account, uint256 cumulativeAmount)` of everything each account has earned since
 *    deployment (all batches so far). Leaf (`payoutLeaf`):
 *
 *        leaf = keccak256(bytes.concat(keccak256(abi.encode(address account, uint256 cumulativeAmount))))
 *
 *    with sorted-pair inner nodes, as `MerkleProof.verify` checks.
 * 4. `claim(account, cumulativeAmount, payoutRoot, proof)` pays `cumulativeAmount` minus what
 *    `account` has already claimed, to `account` (anyone may submit it, e.g. a relayer, since
 *    the funds can only go to `account`). A claim can name any payout root ever posted, so a
 *    claim built against root k still lands after root k+1 is posted; because amounts are
 *    cumulative, an older root never pays more than the newer one would.
 * 5. A payer leaves with `requestWithdrawal(amount)` and, after `withdrawalDelay` seconds,
 *    `withdraw()`. The delay lets the edge settle jobs it has already reserved against the
 *    balance; the settler may still debit the balance during the delay, and `withdraw()` pays
 *    what is left of the request.
 *
 * Accounting (on-chain invariants, exact to the wei):
 * - `address(this).balance == totalBalances + totalDebited - totalClaimed` (ETH only enters by
 *   `deposit`/`depositFor`; there is no `receive`, so plain transfers revert).
 * - `payoutTotal` of every settlement must equal `totalDebited` after it: the new tree must
 *   distribute exactly every wei ever debited, no more and no less.
 * - `totalClaimed <= totalDebited` is checked on every claim, so claims in aggregate can never
 *   take payers' undebited balances, whatever the trees say.
 *
 * Trust assumptions (documented, not enforced): the contract cannot sum a Merkle tree, nor see
 * which jobs a payer ran. The settler is trusted to (a) debit each payer only the prices of its
 * attested jobs in the named batch, and (b) build each payout tree honestly: each account's
 * cumulative amount is what it earned, amounts never decrease between roots, and they sum to
 * `payoutTotal`. Every debit emits `Debited` with the attestation root, so payers can audit
 * their charges against the edge's per-job records. `DEFAULT_ADMIN_ROLE` manages settlers.
 *
 * Reentrancy: every function that sends ETH (`withdraw`, `claim`) updates all state before the
 * transfer, so a re-entering recipient only sees its request cleared or its claim recorded.
 */
contract Escrow is AccessControl {
    /// @notice Role allowed to debit payers and post payout roots (the edge's settler account).
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");

    /// @notice ABI types of a payout leaf, in encoding order (for StandardMerkleTree).
    string public constant PAYOUT_LEAF_TYPES = "address,uint256";

    /// @notice A payer's pending withdrawal; `amount == 0` means none.
    struct WithdrawalRequest {
        uint128 amount;
        uint64 availableAt; // block.timestamp from which `withdraw()` succeeds
    }

    /// @notice Registry whose posted batch roots settlements must name.
    AttestationRegistry public immutable attestationRegistry;
    /// @notice Seconds between `requestWithdrawal` and the earliest `withdraw`.
    uint64 public immutable withdrawalDelay;

    /// @notice Deposited, not yet debited or withdrawn wei of each payer.
    mapping(address payer => uint256) public balanceOf;
    /// @notice Cumulative wei each account has claimed from the payout pool.
    mapping(address account => uint256) public claimed;
    /// @notice 1-based settlement number in which a payout root was posted (0: never posted).
    mapping(bytes32 payoutRoot => uint256) public payoutRootEpoch;
    /// @notice 1-based settlement number in which an attestation batch was settled (0: not yet).
    mapping(bytes32 attestationRoot => uint256) public settledIn;
    mapping(address payer => WithdrawalRequest) private _withdrawals;

    /// @notice Sum of `balanceOf` over all payers.
    uint256 public totalBalances;
    /// @notice Wei ever debited from payers into the payout pool.
    uint256 public totalDebited;
    /// @notice Wei ever paid out by `claim`.
    uint256 public totalClaimed;
    /// @notice The most recent payout root (zero before the first settlement).
    bytes32 public currentPayoutRoot;
    /// @notice Number of settlements so far (the epoch of `currentPayoutRoot`).
    uint256 public epoch;

    /// @notice `from` added `amount` to `payer`'s balance.
    event Deposited(address indexed payer, address indexed from, uint256 amount, uint256 balance);
    /// @notice `payer` was charged `amount` for its jobs in the attestation batch `attestationRoot`.
    event Debited(address indexed payer, bytes32 indexed attestationRoot, uint256 amount, uint256 balance);
    /// @notice One per settlement; `total` is what this batch debited, `totalDebited` the running sum
    /// (and the sum of all cumulative amounts under `payoutRoot`).
    event BatchSettled(
        bytes32 indexed attestationRoot,
        bytes32 indexed payoutRoot,
        uint256 indexed epoch,
        uint256 total,
        uint256 totalDebited
    );
    /// @notice `account` received `amount`, bringing its claimed total to `cumulativeAmount`.
    event Claimed(address indexed account, bytes32 indexed payoutRoot, uint256 amount, uint256 cumulativeAmount);
    event WithdrawalRequested(address indexed payer, uint256 amount, uint64 availableAt);
    event WithdrawalCancelled(address indexed payer);
    /// @notice `amount` may be less than requested when the settler debited the balance meanwhile.
    event Withdrawn(address indexed payer, uint256 amount, uint256 requested);

    error ZeroAddress();
    error ZeroAmount();
    error LengthMismatch(uint256 payers, uint256 amounts);
    error NothingToSettle();
    error ZeroRoot();
    error AttestationBatchNotPosted(bytes32 attestationRoot);
    error BatchAlreadySettled(bytes32 attestationRoot, uint256 epoch);
    error PayoutRootAlreadyPosted(bytes32 payoutRoot);
    error PayoutTotalMismatch(uint256 payoutTotal, uint256 totalDebited);
    error InsufficientBalance(address payer, uint256 balance, uint256 amount);
    error UnknownPayoutRoot(bytes32 payoutRoot);
    error InvalidProof();
    error NothingToClaim(address account, uint256 cumulativeAmount, uint256 alreadyClaimed);
    error ClaimExceedsDebited(uint256 totalClaimed, uint256 totalDebited);
    error NoWithdrawalRequest(address payer);
    error WithdrawalNotReady(uint64 availableAt);

    /**
     * @param admin Receives `DEFAULT_ADMIN_ROLE` (manages settlers).
     * @param settlers Initial holders of `SETTLER_ROLE`.
     * @param registry The AttestationRegistry whose batches are settled here.
     * @param withdrawalDelay_ Seconds a withdrawal waits; should exceed the edge's settlement
     * interval plus the longest job, so every reservation is settled before funds can leave.
     */
    constructor(address admin, address[] memory settlers, AttestationRegistry registry, uint64 withdrawalDelay_) {
        if (admin == address(0) || address(registry) == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        for (uint256 i = 0; i < settlers.length; ++i) {
            if (settlers[i] == address(0)) revert ZeroAddress();
            _grantRole(SETTLER_ROLE, settlers[i]);
        }
        attestationRegistry = registry;
        withdrawalDelay = withdrawalDelay_;
    }

    // ------------------------------------------------------------------------------------------
    // Payers
    // ------------------------------------------------------------------------------------------

    /// @notice Adds `msg.value` to the caller's balance.
    function deposit() external payable {
        _deposit(msg.sender);
    }

    /// @notice Adds `msg.value` to `payer`'s balance (e.g. an organization funding an account).
    function depositFor(address payer) external payable {
        if (payer == address(0)) revert ZeroAddress();
        _deposit(payer);
    }

    /**
     * @notice Starts the withdrawal delay for `amount` of the caller's balance, replacing any
     * pending request (and restarting its delay).
     * @dev The edge must stop reserving against the requested amount at once:
     * `availableBalance` already excludes it. Reverts with `InsufficientBalance` when `amount`
     * exceeds the balance.
     */
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = balanceOf[msg.sender];
        if (amount > balance) revert InsufficientBalance(msg.sender, balance, amount);
        // amount <= balance <= all ETH in existence, far below 2**128.
        uint64 availableAt = uint64(block.timestamp) + withdrawalDelay;
        _withdrawals[msg.sender] = WithdrawalRequest({amount: uint128(amount), availableAt: availableAt});
        emit WithdrawalRequested(msg.sender, amount, availableAt);
    }

    /// @notice Drops the caller's pending withdrawal request.
    function cancelWithdrawal() external {
        if (_withdrawals[msg.sender].amount == 0) revert NoWithdrawalRequest(msg.sender);
        delete _withdrawals[msg.sender];
        emit WithdrawalCancelled(msg.sender);
    }

    /**
     * @notice Pays out the caller's pending withdrawal once its delay has passed: the requested
     * amount, or the whole balance when debits during the delay left less (possibly 0). Clears
     * the request.
     */
    function withdraw() external {
        WithdrawalRequest memory request = _withdrawals[msg.sender];
        if (request.amount == 0) revert NoWithdrawalRequest(msg.sender);
        if (block.timestamp < request.availableAt) revert WithdrawalNotReady(request.availableAt);
        uint256 balance = balanceOf[msg.sender];
        uint256 amount = request.amount < balance ? request.amount : balance;
        delete _withdrawals[msg.sender];
        balanceOf[msg.sender] = balance - amount;
        totalBalances -= amount;
        emit Withdrawn(msg.sender, amount, request.amount);
        if (amount > 0) Address.sendValue(payable(msg.sender), amount);
    }

    /// @notice `payer`'s pending withdrawal (amount 0 when none).
    function withdrawalRequest(address payer) external view returns (WithdrawalRequest memory) {
        return _withdrawals[payer];
    }

    /// @notice What the edge may still reserve against: the balance minus any pending withdrawal.
    function availableBalance(address payer) external view returns (uint256) {
        uint256 balance = balanceOf[payer];
        uint256 pending = _withdrawals[payer].amount;
        return pending < balance ? balance - pending : 0;
    }

    // ------------------------------------------------------------------------------------------
    // Settlement
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Debits `payers[i]` by `amounts[i]` for their jobs in the attestation batch
     * `attestationRoot` and posts `payoutRoot`, the cumulative payout tree after this batch.
     * @dev All-or-nothing. Reverts with `AccessControlUnauthorizedAccount` unless the caller
     * holds `SETTLER_ROLE`; `LengthMismatch`; `AttestationBatchNotPosted` unless
     * `attestationRegistry.isPosted(attestationRoot)`; `BatchAlreadySettled` when that batch
     * was settled before; `NothingToSettle` when the amounts sum to 0 (a batch of free jobs needs
     * no settlement); `InsufficientBalance` when a debit exceeds the payer's balance (the settler
     * can never overdraw; zero amounts are allowed and skipped); `ZeroRoot`,
     * `PayoutRootAlreadyPosted`; `PayoutTotalMismatch` unless `payoutTotal` equals
     * `totalDebited` including this batch.
     * @param payoutTotal The sum of all cumulative amounts in the `payoutRoot` tree.
     */
    function settleBatch(
        bytes32 attestationRoot,
        address[] calldata payers,
        uint256[] calldata amounts,
        bytes32 payoutRoot,
        uint256 payoutTotal
    ) external onlyRole(SETTLER_ROLE) {
        if (payers.length != amounts.length) revert LengthMismatch(payers.length, amounts.length);
        if (!attestationRegistry.isPosted(attestationRoot)) revert AttestationBatchNotPosted(attestationRoot);
        uint256 previous = settledIn[attestationRoot];
        if (previous != 0) revert BatchAlreadySettled(attestationRoot, previous);
        if (payoutRoot == bytes32(0)) revert ZeroRoot();
        if (payoutRootEpoch[payoutRoot] != 0) revert PayoutRootAlreadyPosted(payoutRoot);

        uint256 total = 0;
        for (uint256 i = 0; i < payers.length; ++i) {
            uint256 amount = amounts[i];
            if (amount == 0) continue;
            address payer = payers[i];
            uint256 balance = balanceOf[payer];
            if (amount > balance) revert InsufficientBalance(payer, balance, amount);
            unchecked {
                balance -= amount; // amount <= balance
            }
            balanceOf[payer] = balance;
            total += amount;
            emit Debited(payer, attestationRoot, amount, balance);
        }
        if (total == 0) revert NothingToSettle();

        // Every debit came out of a balance, so total <= totalBalances.
        totalBalances -= total;
        uint256 debited = totalDebited + total;
        if (payoutTotal != debited) revert PayoutTotalMismatch(payoutTotal, debited);
        totalDebited = debited;

        uint256 newEpoch = epoch + 1;
        epoch = newEpoch;
        settledIn[attestationRoot] = newEpoch;
        payoutRootEpoch[payoutRoot] = newEpoch;
        currentPayoutRoot = payoutRoot;
        emit BatchSettled(attestationRoot, payoutRoot, newEpoch, total, debited);
    }

    // ------------------------------------------------------------------------------------------
    // Claims
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Pays `account` the part of `cumulativeAmount` it has not claimed yet, given a
     * proof that `(account, cumulativeAmount)` is a leaf of the posted `payoutRoot`. Anyone may
     * call it; the funds always go to `account`.
     * @dev Reverts with `UnknownPayoutRoot`, `InvalidProof` (also for any amount other than the
     * one in the tree), `NothingToClaim` when `cumulativeAmount` is not above what was already
     * claimed (so a repeated claim reverts rather than paying 0), and `ClaimExceedsDebited` if
     * the pool would pay out more than was ever debited (only reachable with a dishonest tree).
     */
    function claim(address account, uint256 cumulativeAmount, bytes32 payoutRoot, bytes32[] calldata proof)
        external
       
        returns (uint256 amount)
    {
        if (payoutRootEpoch[payoutRoot] == 0) revert UnknownPayoutRoot(payoutRoot);
        if (!MerkleProof.verifyCalldata(proof, payoutRoot, payoutLeaf(account, cumulativeAmount))) {
            revert InvalidProof();
        }
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim(account, cumulativeAmount, already);
        unchecked {
            amount = cumulativeAmount - already; // cumulativeAmount > already
        }
        uint256 claimedTotal = totalClaimed + amount;
        if (claimedTotal > totalDebited) revert ClaimExceedsDebited(claimedTotal, totalDebited);
        claimed[account] = cumulativeAmount;
        totalClaimed = claimedTotal;
        emit Claimed(account, payoutRoot, amount, cumulativeAmount);
        Address.sendValue(payable(account), amount);
    }

    /// @notice The StandardMerkleTree leaf of a payout entry (see the contract docs).
    function payoutLeaf(address account, uint256 cumulativeAmount) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
    }

    // ------------------------------------------------------------------------------------------

    function _deposit(address payer) private {
        if (msg.value == 0) revert ZeroAmount();
        uint256 balance = balanceOf[payer] + msg.value;
        balanceOf[payer] = balance;
        totalBalances += msg.value;
        emit Deposited(payer, msg.sender, msg.value, balance);
    }
}
