// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/**
 * @title ProviderRegistry
 * @notice Providers stake ETH and register the addresses of their devices' signing keys; the
 * edge routes jobs only to devices for which `isActiveDevice` is true, and pays a device's
 * earnings to `providerOf(device)`.
 *
 * - `stake()` adds `msg.value` to the caller's stake. A provider is in good standing while its
 *   stake is at least `minStake` and it has no pending unstake request.
 * - `registerDevice(device, deviceSignature)` binds a device to the calling provider. The device
 *   must consent: `deviceSignature` is the device key's EIP-712 signature (domain name
 *   "depinfer", version "1", this contract's chain id and address) of
 *
 *       DeviceRegistration(address provider,address device,uint256 nonce)
 *
 *   with `nonce = nonces(device)`, which every registration consumes. Without it anyone could
 *   register a device address they saw in a public attestation and collect its earnings; with
 *   it, an old signature cannot be replayed after the device leaves. A device belongs to at most
 *   one provider at a time; only that provider can `unregisterDevice` it.
 * - Unstaking takes `unstakeDelay` seconds: `requestUnstake(amount)`, then `unstake()`. While a
 *   request is pending all of the provider's devices are inactive (so the edge drains them
 *   before the stake leaves) and the stake remains slashable.
 * - `SLASHER_ROLE` accounts may `slash(provider, amount, to)`, e.g. for provably bad
 *   attestations; `DEFAULT_ADMIN_ROLE` manages slashers.
 *
 * Invariant: `address(this).balance == totalStaked` (ETH only enters by `stake`). Functions
 * that send ETH (`unstake`, `slash`) update all state before the transfer, so re-entering
 * recipients see consistent state.
 */
contract ProviderRegistry is AccessControl, EIP712, Nonces {
    /// @notice Role allowed to slash stakes.
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    /// @notice EIP-712 type hash of the device's consent to be registered by `provider`.
    bytes32 public constant DEVICE_REGISTRATION_TYPEHASH =
        keccak256("DeviceRegistration(address provider,address device,uint256 nonce)");

    /// @notice A provider's state, as returned by `getProvider`.
    struct Provider {
        uint256 stake;
        uint256 unstakeAmount; // 0: no pending request
        uint64 unstakeAvailableAt; // block.timestamp from which `unstake()` succeeds
        uint32 deviceCount;
    }

    /// @notice Stake (wei) a provider needs for its devices to be active.
    uint256 public immutable minStake;
    /// @notice Seconds between `requestUnstake` and the earliest `unstake`.
    uint64 public immutable unstakeDelay;

    /// @notice The provider a device is registered to (zero: none).
    mapping(address device => address) public providerOf;
    mapping(address provider => Provider) private _providers;
    /// @notice Sum of all stakes.
    uint256 public totalStaked;

    event Staked(address indexed provider, uint256 amount, uint256 stake);
    event UnstakeRequested(address indexed provider, uint256 amount, uint64 availableAt);
    event UnstakeCancelled(address indexed provider);
    /// @notice `amount` may be less than requested when the stake was slashed meanwhile.
    event Unstaked(address indexed provider, uint256 amount, uint256 stake);
    event DeviceRegistered(address indexed provider, address indexed device);
    event DeviceUnregistered(address indexed provider, address indexed device);
    event Slashed(address indexed provider, uint256 amount, address indexed to, address slasher);

    error ZeroAddress();
    error ZeroAmount();
    error InsufficientStake(address provider, uint256 stake, uint256 required);
    error DeviceAlreadyRegistered(address device, address provider);
    error InvalidDeviceSignature(address device);
    error NotDeviceProvider(address device, address caller);
    error NoUnstakeRequest(address provider);
    error UnstakeNotReady(uint64 availableAt);

    /**
     * @param admin Receives `DEFAULT_ADMIN_ROLE` (manages slashers).
     * @param minStake_ Minimum stake for active devices; must be positive.
     * @param unstakeDelay_ Seconds an unstake waits; long enough to slash for recent jobs.
     * @param slashers Initial holders of `SLASHER_ROLE`.
     */
    constructor(address admin, uint256 minStake_, uint64 unstakeDelay_, address[] memory slashers)
        EIP712("depinfer", "1")
    {
        if (admin == address(0)) revert ZeroAddress();
        if (minStake_ == 0) revert ZeroAmount();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        for (uint256 i = 0; i < slashers.length; ++i) {
            if (slashers[i] == address(0)) revert ZeroAddress();
            _grantRole(SLASHER_ROLE, slashers[i]);
        }
        minStake = minStake_;
        unstakeDelay = unstakeDelay_;
    }

    // ------------------------------------------------------------------------------------------
    // Stake
    // ------------------------------------------------------------------------------------------

    /// @notice Adds `msg.value` to the caller's stake (a pending unstake request stays pending).
    function stake() external payable {
        if (msg.value == 0) revert ZeroAmount();
        Provider storage p = _providers[msg.sender];
        uint256 newStake = p.stake + msg.value;
        p.stake = newStake;
        totalStaked += msg.value;
        emit Staked(msg.sender, msg.value, newStake);
    }

    /**
     * @notice Starts the unstake delay for `amount`, replacing any pending request (and
     * restarting its delay). The caller's devices are inactive until the request is cancelled
     * or executed.
     */
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Provider storage p = _providers[msg.sender];
        if (amount > p.stake) revert InsufficientStake(msg.sender, p.stake, amount);
        uint64 availableAt = uint64(block.timestamp) + unstakeDelay;
        p.unstakeAmount = amount;
        p.unstakeAvailableAt = availableAt;
        emit UnstakeRequested(msg.sender, amount, availableAt);
    }

    /// @notice Drops the caller's pending unstake request (its devices become active again).
    function cancelUnstake() external {
        Provider storage p = _providers[msg.sender];
        if (p.unstakeAmount == 0) revert NoUnstakeRequest(msg.sender);
        p.unstakeAmount = 0;
        p.unstakeAvailableAt = 0;
        emit UnstakeCancelled(msg.sender);
    }

    /**
     * @notice Pays out the caller's pending unstake once its delay has passed: the requested
     * amount, or the whole remaining stake when slashing left less (possibly 0). Devices are
     * active again afterwards if the remaining stake is still at least `minStake`.
     */
    function unstake() external {
        Provider storage p = _providers[msg.sender];
        uint256 requested = p.unstakeAmount;
        if (requested == 0) revert NoUnstakeRequest(msg.sender);
        if (block.timestamp < p.unstakeAvailableAt) revert UnstakeNotReady(p.unstakeAvailableAt);
        uint256 current = p.stake;
        uint256 amount = requested < current ? requested : current;
        uint256 remaining = current - amount;
        p.stake = remaining;
        p.unstakeAmount = 0;
        p.unstakeAvailableAt = 0;
        totalStaked -= amount;
        emit Unstaked(msg.sender, amount, remaining);
        if (amount > 0) Address.sendValue(payable(msg.sender), amount);
    }

    /**
     * @notice Takes `amount` of `provider`'s stake and sends it to `to`.
     * @dev Reverts with `AccessControlUnauthorizedAccount` unless the caller holds
     * `SLASHER_ROLE`, and with `InsufficientStake` when `amount` exceeds the stake (slash the
     * whole stake with `getProvider(provider).stake`). A pending unstake then pays at most
     * what is left.
     */
    function slash(address provider, uint256 amount, address to) external onlyRole(SLASHER_ROLE) {
        if (to == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        Provider storage p = _providers[provider];
        uint256 current = p.stake;
        if (amount > current) revert InsufficientStake(provider, current, amount);
        p.stake = current - amount;
        totalStaked -= amount;
        emit Slashed(provider, amount, to, msg.sender);
        Address.sendValue(payable(to), amount);
    }

    // ------------------------------------------------------------------------------------------
    // Devices
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Registers `device` to the caller, which must hold at least `minStake`.
     * @param deviceSignature The device key's 65-byte EIP-712 signature of
     * `DeviceRegistration(msg.sender, device, nonces(device))`.
     * @dev Reverts with `InsufficientStake`, `DeviceAlreadyRegistered` when any provider holds
     * the device (including the caller), and `InvalidDeviceSignature` when the signature is not
     * the device's for this provider and the current nonce (or is malformed).
     */
    function registerDevice(address device, bytes calldata deviceSignature) external {
        if (device == address(0)) revert ZeroAddress();
        Provider storage p = _providers[msg.sender];
        if (p.stake < minStake) revert InsufficientStake(msg.sender, p.stake, minStake);
        address current = providerOf[device];
        if (current != address(0)) revert DeviceAlreadyRegistered(device, current);
        bytes32 digest = deviceRegistrationDigest(msg.sender, device, _useNonce(device));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, deviceSignature);
        if (err != ECDSA.RecoverError.NoError || signer != device) revert InvalidDeviceSignature(device);
        providerOf[device] = msg.sender;
        p.deviceCount += 1;
        emit DeviceRegistered(msg.sender, device);
    }

    /// @notice Removes `device` from the caller, which must be its provider.
    function unregisterDevice(address device) external {
        // An unregistered device maps to address(0), never a caller.
        if (providerOf[device] != msg.sender) revert NotDeviceProvider(device, msg.sender);
        delete providerOf[device];
        _providers[msg.sender].deviceCount -= 1;
        emit DeviceUnregistered(msg.sender, device);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /// @notice Whether the edge may route to `device`: registered, and its provider holds at least
    /// `minStake` with no pending unstake request.
    function isActiveDevice(address device) external view returns (bool) {
        address provider = providerOf[device];
        if (provider == address(0)) return false;
        return _inGoodStanding(_providers[provider]);
    }

    /// @notice Whether `provider` holds at least `minStake` with no pending unstake request.
    function isActiveProvider(address provider) external view returns (bool) {
        return _inGoodStanding(_providers[provider]);
    }

    /// @notice A provider's stake, pending unstake and device count (all zero when unknown).
    function getProvider(address provider) external view returns (Provider memory) {
        return _providers[provider];
    }

    /// @notice The EIP-712 digest a device signs to consent to registration by `provider`.
    function deviceRegistrationDigest(address provider, address device, uint256 nonce) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(DEVICE_REGISTRATION_TYPEHASH, provider, device, nonce)));
    }

    function _inGoodStanding(Provider storage p) private view returns (bool) {
        return p.unstakeAmount == 0 && p.stake >= minStake;
    }
}
