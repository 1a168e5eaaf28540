// matrix-js-sdk with its Rust crypto (matrix-sdk-crypto-wasm) against Parley: the E2EE check.
// Usage: npm ci && node crypto.mjs http://127.0.0.1:8008   (the server needs open registration)
// Steps: two clients with initRustCrypto, an encrypted DM that decrypts both ways, cross-signing
// and secret storage bootstrapped on alice's device, a key backup made from it, then a new device
// of alice (the first one stopped, so no key can come by gossip) restores the backup from secret
// storage, decrypts the old messages and cross-signs itself. Prints OK; exits 1 on the first
// failure with the step that failed.
import {api, check, deadline, fail, log, login, PASSWORD, quiet, register, step, until, base} from "./harness.mjs";
import * as sdk from "matrix-js-sdk";
import {CryptoEvent, VerificationPhase, VerifierEvent} from "matrix-js-sdk/lib/crypto-api/index.js";

deadline(80000);

// The secret storage key lives only in memory, as if the user kept their recovery key at hand.
const ssKeys = new Map();
const cryptoCallbacks = {
  getSecretStorageKey: async ({keys}) => {
    for (const id of Object.keys(keys)) if (ssKeys.has(id)) return [id, ssKeys.get(id)];
    return null;
  },
  cacheSecretStorageKey: (keyId, _info, key) => { ssKeys.set(keyId, key); },
};

// Answers the user-interactive auth of /keys/device_signing/upload with the password, if asked.
let uiaAsked = 0;
function uia(userId) {
  return async (makeRequest) => {
    try { await makeRequest(null); } catch (e) {
      if (e?.httpStatus !== 401 || !e?.data?.flows) throw e;
      uiaAsked++;
      await makeRequest({type: "m.login.password", identifier: {type: "m.id.user", user: userId}, password: PASSWORD, session: e.data.session});
    }
  };
}

async function start(r) {
  const c = sdk.createClient({baseUrl: base, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id, logger: quiet, cryptoCallbacks});
  await c.initRustCrypto({useIndexedDB: false});
  const prepared = new Promise((res) => c.on(sdk.ClientEvent.Sync, (s) => { if (s === "PREPARED") res(); }));
  await c.startClient({initialSyncLimit: 20});
  await Promise.race([prepared, new Promise((_, rej) => setTimeout(() => rej(new Error("no PREPARED sync in 20 s")), 20000))]);
  return c;
}

// An event of the room's live timeline that arrived encrypted and decrypted to `body`.
function decrypted(c, roomId, body) {
  const evs = c.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
  return evs.find((e) => e.isEncrypted() && e.getWireType() === "m.room.encrypted" && e.getType() === "m.room.message" && e.getContent().body === body);
}
function utds(c, roomId) {
  const evs = c.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
  return evs.filter((e) => e.isDecryptionFailure()).map((e) => `${e.getId()}: ${e.decryptionFailureReason}`);
}
async function waitDecrypted(c, roomId, body, ms = 15000) {
  try {
    return await until(`"${body}" decrypted on ${c.getUserId()}/${c.getDeviceId()}`, () => decrypted(c, roomId, body), ms);
  } catch (e) {
    throw new Error(`${e.message}; undecryptable: [${utds(c, roomId).join(", ")}]`);
  }
}

const suffix = Math.random().toString(36).slice(2, 8);
const [a, b] = await step("register alice and bob", () => Promise.all([register("jsca" + suffix), register("jscb" + suffix)]));
const [ca, cb] = await step("initRustCrypto and first sync on both", () => Promise.all([start(a), start(b)]));
log(`  crypto ${ca.getCrypto().getVersion()}`);

const roomId = await step("alice creates an encrypted DM with bob, bob joins", async () => {
  const {room_id} = await ca.createRoom({
    preset: sdk.Preset.TrustedPrivateChat, is_direct: true, invite: [b.user_id],
    initial_state: [{type: "m.room.encryption", state_key: "", content: {algorithm: "m.megolm.v1.aes-sha2"}}],
  });
  await until("bob's invite", () => cb.getRoom(room_id)?.getMyMembership() === "invite");
  await cb.joinRoom(room_id);
  await until("alice sees bob joined", () => ca.getRoom(room_id)?.getMember(b.user_id)?.membership === "join");
  check(await ca.getCrypto().isEncryptionEnabledInRoom(room_id), "alice's crypto does not see the room as encrypted");
  return room_id;
});

await step("alice -> bob: encrypted, bob decrypts", async () => {
  const {event_id} = await ca.sendTextMessage(roomId, "hello bob, secretly");
  const raw = await api("GET", `/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(event_id)}`, b.access_token);
  check(raw.type === "m.room.encrypted" && raw.content.algorithm === "m.megolm.v1.aes-sha2" && !("body" in raw.content),
    `the server holds a non-megolm event: ${JSON.stringify(raw)}`);
  await waitDecrypted(cb, roomId, "hello bob, secretly");
});
await step("bob -> alice: encrypted, alice decrypts", async () => {
  await cb.sendTextMessage(roomId, "hello alice, secretly");
  await waitDecrypted(ca, roomId, "hello alice, secretly");
});

await step("alice: bootstrapCrossSigning", async () => {
  await ca.getCrypto().bootstrapCrossSigning({authUploadDeviceSigningKeys: uia(a.user_id)});
  check(await ca.getCrypto().isCrossSigningReady(), "isCrossSigningReady() is false after bootstrap");
  log(`  user-interactive auth asked ${uiaAsked} time(s) on the first upload`);
});
await step("alice: bootstrapSecretStorage with a new key backup", async () => {
  await ca.getCrypto().bootstrapSecretStorage({
    createSecretStorageKey: () => ca.getCrypto().createRecoveryKeyFromPassphrase(),
    setupNewKeyBackup: true,
  });
  check(ssKeys.size === 1, `expected one cached secret storage key, have ${ssKeys.size}`);
  check(await ca.getCrypto().isSecretStorageReady(), "isSecretStorageReady() is false after bootstrap");
  const status = await ca.getCrypto().getCrossSigningStatus();
  check(status.privateKeysInSecretStorage, `cross-signing keys not in secret storage: ${JSON.stringify(status)}`);
});
const version = await step("key backup is active and trusted; both sessions reach the server", async () => {
  const check1 = await ca.getCrypto().checkKeyBackupAndEnable();
  check(check1 && check1.trustInfo.trusted && check1.trustInfo.matchesDecryptionKey, `backup not trusted: ${JSON.stringify(check1)}`);
  const v = await ca.getCrypto().getActiveSessionBackupVersion();
  check(v === check1.backupInfo.version, `active backup ${v} is not the server's latest ${check1.backupInfo.version}`);
  await until("two sessions of the DM in the backup", async () => {
    const keys = await api("GET", `/room_keys/keys?version=${encodeURIComponent(v)}`, a.access_token);
    return Object.keys(keys.rooms?.[roomId]?.sessions ?? {}).length >= 2;
  });
  return v;
});
await step("bob sees alice's cross-signing keys, and her device signed by them", async () => {
  check(await cb.getCrypto().userHasCrossSigningKeys(a.user_id, true), "bob's crypto finds no cross-signing keys for alice");
  const q = await api("POST", "/keys/query", b.access_token, {device_keys: {[a.user_id]: []}});
  const ssk = Object.keys(q.self_signing_keys?.[a.user_id]?.keys ?? {})[0];
  check(q.master_keys?.[a.user_id] && ssk, `no master/self-signing key for alice in /keys/query: ${JSON.stringify(q)}`);
  const sigs = q.device_keys?.[a.user_id]?.[a.device_id]?.signatures?.[a.user_id] ?? {};
  check(ssk in sigs, `alice's device carries no self-signing signature: ${JSON.stringify(sigs)}`);
});

ca.stopClient();  // from here alice's first device is gone: keys can only come from the backup
const a2 = await step("alice logs in on a new device", () => login(a.user_id));
const ca2 = await step("new device: initRustCrypto and first sync", () => start(a2));
await step("new device: backup key from secret storage, restoreKeyBackup", async () => {
  await ca2.getCrypto().loadSessionBackupPrivateKeyFromSecretStorage();
  const res = await ca2.getCrypto().restoreKeyBackup();
  check(res.imported >= 2 && res.total === res.imported, `restored ${JSON.stringify(res)}, want 2 or more, all imported`);
});
await step("new device decrypts the messages sent before it existed", async () => {
  await waitDecrypted(ca2, roomId, "hello bob, secretly");
  await waitDecrypted(ca2, roomId, "hello alice, secretly");
});
await step("new device: bootstrapCrossSigning from secret storage signs it", async () => {
  const before = uiaAsked;
  // The import needs the public keys from /keys/query first (else it fails without saying why).
  check(await ca2.getCrypto().userHasCrossSigningKeys(a.user_id, true), "the new device finds no cross-signing keys for alice");
  await ca2.getCrypto().bootstrapCrossSigning({authUploadDeviceSigningKeys: uia(a.user_id)});
  check(uiaAsked === before, "the new device uploaded new cross-signing keys instead of reusing them");
  check(await ca2.getCrypto().isCrossSigningReady(), "isCrossSigningReady() is false on the new device");
  const q = await until("the new device's self-signing signature in bob's /keys/query", async () => {
    const q = await api("POST", "/keys/query", b.access_token, {device_keys: {[a.user_id]: [a2.device_id]}});
    const ssk = Object.keys(q.self_signing_keys?.[a.user_id]?.keys ?? {})[0];
    return ssk in (q.device_keys?.[a.user_id]?.[a2.device_id]?.signatures?.[a.user_id] ?? {}) ? q : null;
  });
  check(Object.keys(q.device_keys[a.user_id]).length === 1, "/keys/query returned devices that were not asked for");
  // Now cross-signed, the new device trusts the backup (signed by alice's master key) and uses it.
  const c2 = await ca2.getCrypto().checkKeyBackupAndEnable();
  check(c2?.trustInfo.trusted && c2.backupInfo.version === version, `new device does not trust backup ${version}: ${JSON.stringify(c2)}`);
  check(await ca2.getCrypto().getActiveSessionBackupVersion() === version, "the new device does not back up to the same version");
});
await step("bob -> both alice devices: a new message decrypts on the new one", async () => {
  // No forced download: bob's sync must say alice's devices changed, so his crypto re-queries.
  await until("bob's crypto learns of alice's new device from device_lists", async () =>
    (await cb.getCrypto().getUserDeviceInfo([a.user_id], false)).get(a.user_id)?.has(a2.device_id));
  await cb.sendTextMessage(roomId, "welcome, new device");
  await waitDecrypted(ca2, roomId, "welcome, new device");
});

await step("bob verifies alice's new device by emoji (SAS over to-device), then trusts alice", async () => {
  await cb.getCrypto().bootstrapCrossSigning({authUploadDeviceSigningKeys: uia(b.user_id)});
  const shown = {};
  // Each side compares the emoji it computed with the other's, as two people would.
  const confirmOn = (who, verifier) => verifier.on(VerifierEvent.ShowSas, (sas) => {
    shown[who] = sas.sas.emoji.map((e) => e[1]).join(" ");
    sas.confirm();
  });
  const aliceDone = new Promise((resolve, reject) => {
    ca2.on(CryptoEvent.VerificationRequestReceived, async (req) => {
      try {
        await req.accept();
        await until("bob's m.key.verification.start on alice's side", () => req.phase === VerificationPhase.Started && req.verifier);
        confirmOn("alice", req.verifier);
        await req.verifier.verify();
        resolve();
      } catch (e) { reject(e); }
    });
  });
  const req = await cb.getCrypto().requestDeviceVerification(a.user_id, a2.device_id);
  await until("alice's m.key.verification.ready", () => req.phase === VerificationPhase.Ready, 20000);
  const verifier = await req.startVerification("m.sas.v1");
  confirmOn("bob", verifier);
  await Promise.all([verifier.verify(), aliceDone]);
  check(shown.alice && shown.alice === shown.bob, `the emoji differ: alice saw "${shown.alice}", bob "${shown.bob}"`);
  log(`  both saw: ${shown.bob}`);
  await until("bob trusts alice through cross-signing", async () =>
    (await cb.getCrypto().getUserVerificationStatus(a.user_id)).isCrossSigningVerified());
  const dev = await cb.getCrypto().getDeviceVerificationStatus(a.user_id, a2.device_id);
  check(dev?.crossSigningVerified, `bob does not see alice's new device as cross-signed: ${JSON.stringify(dev)}`);
  // bob's user-signing key signed alice's master key, uploaded through /keys/signatures/upload.
  const q = await api("POST", "/keys/query", b.access_token, {device_keys: {[a.user_id]: []}});
  const usk = Object.keys((await api("POST", "/keys/query", b.access_token, {device_keys: {[b.user_id]: []}})).user_signing_keys?.[b.user_id]?.keys ?? {})[0];
  check(usk && usk in (q.master_keys?.[a.user_id]?.signatures?.[b.user_id] ?? {}),
    `alice's master key carries no signature by bob's user-signing key ${usk}: ${JSON.stringify(q.master_keys?.[a.user_id])}`);
});

// Dehydrated devices (MSC3814, as matrix-js-sdk calls it): only with --dehydration.
if (process.argv.includes("--dehydration")) {
  const DEHYDRATED = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
  const dehydratedId = await step("new device: startDehydration uploads a dehydrated device", async () => {
    check(await ca2.getCrypto().isDehydrationSupported(), "isDehydrationSupported() is false");
    await ca2.getCrypto().startDehydration({createNewKey: true});
    const d = await api("GET", DEHYDRATED, a2.access_token);
    check(typeof d.device_id === "string" && d.device_data, `GET dehydrated_device: ${JSON.stringify(d)}`);
    const q = await api("POST", "/keys/query", b.access_token, {device_keys: {[a.user_id]: [d.device_id]}});
    const keys = q.device_keys?.[a.user_id]?.[d.device_id];
    check(keys?.dehydrated === true, `bob's /keys/query has no dehydrated device ${d.device_id}: ${JSON.stringify(keys)}`);
    return d.device_id;
  });
  await step("alice has no running device; bob's new room key goes to the dehydrated one", async () => {
    ca2.stopClient();
    await api("POST", "/logout", a2.access_token, {});
    await until("bob's crypto learns of the dehydrated device", async () =>
      (await cb.getCrypto().getUserDeviceInfo([a.user_id], false)).get(a.user_id)?.has(dehydratedId));
    await cb.getCrypto().forceDiscardSession(roomId);  // a session no running device of alice's has
    await cb.sendTextMessage(roomId, "while alice was away");
  });
  const a3 = await step("alice logs in on a third device", () => login(a.user_id));
  const ca3 = await step("third device: initRustCrypto, cross-signing from secret storage", async () => {
    const c = await start(a3);
    check(await c.getCrypto().userHasCrossSigningKeys(a.user_id, true), "no cross-signing keys for alice");
    await c.getCrypto().bootstrapCrossSigning({authUploadDeviceSigningKeys: uia(a.user_id)});
    return c;
  });
  await step("third device rehydrates and decrypts what came while alice was away", async () => {
    let keys = 0, events = 0, error = null, completed = false;
    ca3.on(CryptoEvent.RehydrationProgress, (k, e) => { keys = k; events = e; });
    ca3.on(CryptoEvent.RehydrationError, (m) => { error = m; });
    ca3.on(CryptoEvent.RehydrationCompleted, () => { completed = true; });
    // The SDK pages GET .../events?from=<next_batch> until an answer has no next_batch.
    await Promise.race([ca3.getCrypto().startDehydration(), new Promise((_, rej) => setTimeout(() => rej(new Error(
      `startDehydration did not return in 20 s; so far ${keys} room key(s) from ${events} to-device event(s) ` +
      "(a count far above what was sent means the /events stream never ends: GET must honour ?from= and " +
      "leave next_batch out once there is nothing more)")), 20000))]);
    check(!error, `rehydration failed: ${error}`);
    check(completed && keys >= 1, `rehydration completed=${completed} with ${keys} room keys from ${events} to-device events`);
    log(`  rehydrated: ${keys} room key(s) from ${events} to-device event(s)`);
    await waitDecrypted(ca3, roomId, "while alice was away");
    const d = await api("GET", DEHYDRATED, a3.access_token);
    check(d.device_id !== dehydratedId, "startDehydration did not replace the used dehydrated device");
  });
  ca3.stopClient();
}

ca2.stopClient(); cb.stopClient();
log("OK");
process.exit(0);
