// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/**
 * @title AttestationStore
 * @notice Benchmark baseline only (bench/attest.ts compiles it; it is not deployed anywhere):
 * one transaction per attestation that stores the whole attestation on-chain, the way the
 * Ethereum Attestation Service does (`EAS.attest`: a record keyed by a derived uid in a mapping,
 * plus an `Attested` event). AttestationRegistry's batches of Merkle roots are measured against
 * the gas this costs.
 *
 * The record holds what an EAS attestation of the depinfer schema would: EAS's own metadata
 * (uid, schema, time, expirationTime, revocationTime, refUID, attester, revocable) and the
 * seven attestation fields, typed rather than ABI-encoded into `bytes data` (fewer slots, so a
 * cheaper baseline than real EAS), plus the device's 65-byte EIP-712 signature (r, s, v), which
 * is what lets anyone re-check the attestation later. Fields are packed where types allow
 * (v shares the attester's slot, completedAt the device's) to keep the baseline honest: 12
 * non-zero slots per attestation. The uid is EAS's with bump = 0: a hash of the record's
 * content; the job id makes it unique.
 */
contract AttestationStore {
    /// @notice The depinfer attestation schema (what EAS's SchemaRegistry would assign a uid).
    bytes32 public constant SCHEMA = keccak256(
        "bytes32 jobId,bytes32 modelHash,bytes32 inputHash,bytes32 outputHash,address device,uint256 price,uint64 completedAt"
    );

    /// @notice The signed attestation, as devices sign it (EIP-712 `Attestation`).
    struct AttestationData {
        bytes32 jobId;
        bytes32 modelHash;
        bytes32 inputHash;
        bytes32 outputHash;
        address device;
        uint256 price;
        uint64 completedAt;
    }

    /// @notice The device's signature of the attestation, as EAS's delegated requests carry it.
    struct Signature {
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice What is stored per attestation (EAS `Attestation` layout, schema fields typed).
    struct Record {
        bytes32 uid;
        bytes32 schema;
        uint64 time;
        uint64 expirationTime;
        uint64 revocationTime;
        bytes32 refUID;
        address attester;
        bool revocable;
        uint8 v;
        bytes32 jobId;
        bytes32 modelHash;
        bytes32 inputHash;
        bytes32 outputHash;
        address device;
        uint64 completedAt;
        uint256 price;
        bytes32 r;
        bytes32 s;
    }

    mapping(bytes32 uid => Record) private _records;

    /// @notice As EAS's `Attested(recipient, attester, uid, schemaUID)`, the device as recipient.
    event Attested(address indexed device, address indexed attester, bytes32 uid, bytes32 indexed schema);

    error AlreadyAttested(bytes32 uid);

    /// @notice Stores one attestation and returns its uid.
    function attest(AttestationData calldata a, Signature calldata signature) external returns (bytes32 uid) {
        uid = keccak256(abi.encode(SCHEMA, msg.sender, block.timestamp, a));
        Record storage record = _records[uid];
        if (record.uid != bytes32(0)) revert AlreadyAttested(uid);
        record.uid = uid;
        record.schema = SCHEMA;
        record.time = uint64(block.timestamp);
        record.attester = msg.sender;
        record.revocable = true;
        record.v = signature.v;
        record.jobId = a.jobId;
        record.modelHash = a.modelHash;
        record.inputHash = a.inputHash;
        record.outputHash = a.outputHash;
        record.device = a.device;
        record.completedAt = a.completedAt;
        record.price = a.price;
        record.r = signature.r;
        record.s = signature.s;
        emit Attested(a.device, msg.sender, uid, SCHEMA);
    }

    /// @notice The record stored under `uid` (all zero for an unknown uid).
    function getAttestation(bytes32 uid) external view returns (Record memory) {
        return _records[uid];
    }
}
