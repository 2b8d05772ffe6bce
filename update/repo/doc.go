// Package repo is the release repository: bundles plus TUF-style signed
// metadata, as plain static files that any web server, object store or CDN
// can serve. No server of ours sits in the download path.
//
// # Layout
//
//	N.root.json          every root version, kept: clients rotate version by version
//	timestamp.json       the one mutable file; expires in a day
//	N.snapshot.json      version, length and sha256 of targets
//	N.targets.json       each bundle's length and sha256, its release, its rollout plan and state
//	targets/<board>/<sha256>.<version>.pqb   the bundles, named by hash
//
// Files are written targets → snapshot → timestamp, each atomically, so a
// client reading the new timestamp always finds what it points at.
//
// # Signatures: hybrid, per role
//
// Every key is a composite ML-DSA-65 + Ed25519 key (update/hybrid); there is
// no other key type. A signature entry is one composite signature over the
// exact bytes of "signed" as they appear in the file (no canonical JSON:
// the verifier never re-encodes). A role's threshold counts distinct keys
// of the role whose composite signature verifies — both halves. So the
// policy "a valid ML-DSA signature AND a valid classical signature for every
// role" holds by construction: a missing or bad half fails the key, and a
// root listing a classical-only or PQ-only key is rejected as malformed.
//
// # go-tuf/v2 (the anchor) and what we take from it
//
// We keep its metadata shape (github.com/theupdateframework/go-tuf/v2
// metadata: "signed"/"signatures", "_type", "spec_version", "version",
// "expires", root "keys"/"roles"/"threshold"/"consistent_snapshot", snapshot
// and timestamp "meta" with version/length/hashes, targets with
// length/hashes/custom) and its client workflow (updater/trustedmetadata).
// We do not import it:
//   - its Key type verifies only RSA, ECDSA and Ed25519 (through sigstore's
//     signature loaders); a "mldsa65-ed25519" key makes VerifyDelegate fail,
//     and there is no hook to add a verifier;
//   - its threshold counts any valid key of the role, so it cannot demand
//     that one signature be post-quantum and another classical;
//   - it verifies over canonical JSON (securesystemslib cjson) and pulls in
//     sigstore and go-containerregistry: weight in the device binary for
//     the part we would replace anyway.
//
// The checks reimplemented here (client.go), each tested in repo_test.go
// against its attack:
//   - root rotation N → N+1 signed by a threshold of the old and of the new
//     root keys, version exactly N+1; rotated timestamp/snapshot keys drop
//     the trusted timestamp/snapshot (fast-forward recovery);
//   - rollback: timestamp, snapshot and targets versions never go down,
//     nor does any version a trusted parent listed; the trusted files are
//     kept in a LocalStore so this survives reboots;
//   - freeze: every role's "expires" is checked against the client's clock;
//   - mix-and-match: snapshot and targets must have the exact version,
//     length and sha256 their parent lists;
//   - targets: a bundle must have the length and sha256 targets lists;
//   - strict parsing: unknown fields are errors (go-tuf keeps them).
//
// Not implemented: delegated targets roles (one targets role signs all
// releases) and TUF's hash-prefixed metadata names for targets files other
// than bundles.
//
// # Trust split
//
// The rollout state (which waves are open) lives in targets, so the fleet
// controller holds the targets key online, as TUF's timestamp and snapshot
// keys are. A stolen targets key still cannot install firmware: every
// bundle carries its own composite signature by the offline release key,
// which the device checks against the keyring in its image (update/bundle).
package repo
