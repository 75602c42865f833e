// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/**
 * @title AttestationRegistry
 * @notice Anchors Merkle roots of batches of depinfer job attestations on-chain.
 *
 * A batch covers the contiguous attestation sequence numbers `fromSeq..toSeq` (inclusive) and
 * is identified by the root of an OpenZeppelin `StandardMerkleTree` built over the
 * attestation tuples of the batch.
 *
 * Leaf format (identical to `StandardMerkleTree.of(values, ATTESTATION_LEAF_TYPES)` of the
 * OpenZeppelin merkle-tree JS library):
 *
 *     leaf = keccak256(bytes.concat(keccak256(abi.encode(
 *         bytes32 jobId, bytes32 modelHash, bytes32 inputHash, bytes32 outputHash,
 *         address device, uint256 price, uint64 completedAt, uint64 seq
 *     ))))
 *
 * Inner nodes hash the sorted pair: `keccak256(abi.encodePacked(min(a, b), max(a, b)))`, which
 * is what `MerkleProof.verify` checks. `attestationLeaf` computes the leaf on-chain so any
 * client can check its own encoding against the contract.
 *
 * Access: `DEFAULT_ADMIN_ROLE` (granted to the deployer) manages `SUBMITTER_ROLE`; only
 * accounts holding `SUBMITTER_ROLE` may call `submitBatch`.
 */
contract AttestationRegistry is AccessControl {
    /// @notice Role allowed to post batch roots.
    bytes32 public constant SUBMITTER_ROLE = keccak256("SUBMITTER_ROLE");

    /// @notice ABI types of the attestation tuple, in leaf-encoding order (for StandardMerkleTree).
    string public constant ATTESTATION_LEAF_TYPES =
        "bytes32,bytes32,bytes32,bytes32,address,uint256,uint64,uint64";

    /// @notice One attestation, in leaf-encoding order.
    struct Attestation {
        bytes32 jobId;
        bytes32 modelHash;
        bytes32 inputHash;
        bytes32 outputHash;
        address device;
        uint256 price;
        uint64 completedAt;
        uint64 seq;
    }

    /// @notice A posted batch, as returned by `getBatch`.
    struct Batch {
        uint64 fromSeq;
        uint64 toSeq;
        uint32 count;
        uint48 postedAt; // block.timestamp
        uint48 postedAtBlock; // block.number
        address submitter;
    }

    /// @dev Storage form of a batch: exactly one slot (8 + 4 + 6 + 6 + 4 = 28 bytes).
    /// `toSeq` is derived (`fromSeq + count - 1`) and the submitter is stored as a small id
    /// assigned when the account is first granted `SUBMITTER_ROLE`.
    struct BatchRecord {
        uint64 fromSeq;
        uint32 count;
        uint48 postedAt;
        uint48 postedAtBlock;
        uint32 submitterId;
    }

    mapping(bytes32 root => BatchRecord) private _batches;
    mapping(address account => uint32) private _submitterIds;
    mapping(uint32 id => address) private _submitterById;
    uint32 private _submitterCount;

    /// @notice Emitted once per posted batch.
    event BatchSubmitted(bytes32 indexed root, uint64 fromSeq, uint64 toSeq, uint32 count, address submitter);

    error ZeroRoot();
    error EmptyBatch();
    error CountMismatch(uint32 count, uint64 fromSeq, uint64 toSeq);
    error RootAlreadyPosted(bytes32 root);
    error ZeroAddress();

    /// @param admin Receives `DEFAULT_ADMIN_ROLE`.
    /// @param submitters Initial holders of `SUBMITTER_ROLE`.
    constructor(address admin, address[] memory submitters) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        for (uint256 i = 0; i < submitters.length; ++i) {
            if (submitters[i] == address(0)) revert ZeroAddress();
            _grantRole(SUBMITTER_ROLE, submitters[i]);
        }
    }

    /**
     * @notice Posts the Merkle root of the attestations `fromSeq..toSeq` (inclusive).
     * @dev Reverts with `AccessControlUnauthorizedAccount` unless the caller holds
     * `SUBMITTER_ROLE`, `ZeroRoot` for a zero root, `EmptyBatch` for `count == 0`,
     * `CountMismatch` unless `count == toSeq - fromSeq + 1`, and `RootAlreadyPosted` when the
     * root is already registered.
     */
    function submitBatch(bytes32 root, uint32 count, uint64 fromSeq, uint64 toSeq)
        external
        onlyRole(SUBMITTER_ROLE)
    {
        if (root == bytes32(0)) revert ZeroRoot();
        if (count == 0) revert EmptyBatch();
        // toSeq >= fromSeq, so the subtraction cannot underflow; + 1 cannot overflow in uint256.
        if (toSeq < fromSeq || uint256(toSeq - fromSeq) + 1 != count) {
            revert CountMismatch(count, fromSeq, toSeq);
        }
        BatchRecord storage record = _batches[root];
        if (record.count != 0) revert RootAlreadyPosted(root);

        _batches[root] = BatchRecord({
            fromSeq: fromSeq,
            count: count,
            postedAt: uint48(block.timestamp),
            postedAtBlock: uint48(block.number),
            submitterId: _submitterIds[msg.sender]
        });
        emit BatchSubmitted(root, fromSeq, toSeq, count, msg.sender);
    }

    /// @notice Whether `root` has been posted.
    function isPosted(bytes32 root) external view returns (bool) {
        return _batches[root].count != 0;
    }

    /// @notice The batch posted under `root`; all fields are zero for an unknown root.
    function getBatch(bytes32 root) external view returns (Batch memory batch) {
        BatchRecord memory r = _batches[root];
        if (r.count == 0) return batch;
        batch = Batch({
            fromSeq: r.fromSeq,
            toSeq: r.fromSeq + r.count - 1,
            count: r.count,
            postedAt: r.postedAt,
            postedAtBlock: r.postedAtBlock,
            submitter: _submitterById[r.submitterId]
        });
    }

    /**
     * @notice Whether `leaf` is included in the posted batch `root` (false for an unknown root).
     * @dev `leaf` must be the double-hashed leaf (see the contract docs / `attestationLeaf`).
     * As with any raw-leaf Merkle check, an inner node with a shortened proof also verifies;
     * use `verifyLeafData` to prove that a specific attestation tuple is in the batch.
     */
    function verifyAttestation(bytes32 root, bytes32[] calldata proof, bytes32 leaf) external view returns (bool) {
        if (_batches[root].count == 0) return false;
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /**
     * @notice Whether the attestation tuple `a` is included in the posted batch `root` and its
     * `seq` lies within the batch range (false for an unknown root).
     */
    function verifyLeafData(bytes32 root, bytes32[] calldata proof, Attestation calldata a)
        external
        view
        returns (bool)
    {
        BatchRecord memory r = _batches[root];
        if (r.count == 0) return false;
        if (a.seq < r.fromSeq || a.seq - r.fromSeq >= r.count) return false;
        return MerkleProof.verifyCalldata(proof, root, _leaf(a));
    }

    /// @notice The StandardMerkleTree leaf of an attestation tuple (see the contract docs).
    function attestationLeaf(
        bytes32 jobId,
        bytes32 modelHash,
        bytes32 inputHash,
        bytes32 outputHash,
        address device,
        uint256 price,
        uint64 completedAt,
        uint64 seq
    ) external pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(abi.encode(jobId, modelHash, inputHash, outputHash, device, price, completedAt, seq))
            )
        );
    }

    /// @notice The address behind a submitter id (0 for an unknown id).
    function submitterById(uint32 id) external view returns (address) {
        return _submitterById[id];
    }

    /// @dev A static tuple ABI-encodes exactly like its fields in sequence, so this matches
    /// `attestationLeaf`.
    function _leaf(Attestation calldata a) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(a))));
    }

    /// @dev Assigns each account a stable submitter id the first time it receives `SUBMITTER_ROLE`
    /// (ids survive revocation so old batches keep resolving to their submitter).
    function _grantRole(bytes32 role, address account) internal override returns (bool granted) {
        granted = super._grantRole(role, account);
        if (granted && role == SUBMITTER_ROLE && _submitterIds[account] == 0) {
            uint32 id = ++_submitterCount;
            _submitterIds[account] = id;
            _submitterById[id] = account;
        }
    }
}
