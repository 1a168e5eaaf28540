// matrix-js-sdk's media calls against Parley: uploadContent (an avatar and a file), setAvatarUrl,
// then another user downloads through authenticated media (mxcUrlToHttp with useAuthentication,
// fetched with the access token) and gets a thumbnail; also the async upload path
// (POST /_matrix/media/v1/create + PUT). Needs Node 20+; prints "ok: <step>" lines and OK.
// Usage: npm ci && node media.mjs http://127.0.0.1:8008   (the server needs open registration)
import {base, fail, quiet, register} from "./harness.mjs";
import * as sdk from "matrix-js-sdk";
import { createHash, randomBytes } from "node:crypto";
const ok = (step) => console.log("ok:", step);
const mk = (r) => sdk.createClient({baseUrl: base, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id, logger: quiet});
const suffix = Math.random().toString(36).slice(2, 8);
const a = await register("jsma" + suffix), b = await register("jsmb" + suffix);
const ca = mk(a), cb = mk(b);
const sha = (buf) => createHash("sha256").update(buf).digest("hex");
async function authedGet(client, url) {
  const r = await fetch(url, {headers: {Authorization: `Bearer ${client.getAccessToken()}`}});
  return {status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer())};
}

// 1. an avatar: a small PNG made by hand (1 pixel is enough for a download; thumbnails below
// use a real-sized image)
const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64");
const avatar = await ca.uploadContent(png, {type: "image/png", name: "avatar.png"});
if (!avatar.content_uri?.startsWith("mxc://")) fail("no content_uri: " + JSON.stringify(avatar));
await ca.setAvatarUrl(avatar.content_uri);
const profile = await cb.getProfileInfo(a.user_id);
if (profile.avatar_url !== avatar.content_uri) fail("avatar_url not set: " + JSON.stringify(profile));
ok("uploadContent + setAvatarUrl, seen by the other user");

// 2. a file, downloaded by the other user through authenticated media
const file = randomBytes(1024 * 1024 + 3);
const up = await ca.uploadContent(file, {type: "application/octet-stream", name: "data.bin"});
const url = cb.mxcUrlToHttp(up.content_uri, undefined, undefined, undefined, false, true, true);
if (!url.includes("/_matrix/client/v1/media/download/")) fail("not an authenticated media URL: " + url);
const got = await authedGet(cb, url);
if (got.status !== 200 || sha(got.body) !== sha(file)) fail(`download: ${got.status}, ${got.body.length} bytes`);
if (!got.headers.get("content-disposition")?.startsWith("attachment")) fail("disposition " + got.headers.get("content-disposition"));
const noToken = await fetch(url);
if (noToken.status !== 401) fail("download without a token: " + noToken.status);
ok("download via mxcUrlToHttp(useAuthentication) by another user, byte for byte");

// 3. a thumbnail of the avatar (a 1x1 image is served as it is: never upscaled)
const turl = cb.mxcUrlToHttp(avatar.content_uri, 96, 96, "crop", false, true, true);
const thumb = await authedGet(cb, turl);
if (thumb.status !== 200 || !thumb.headers.get("content-type")?.startsWith("image/png")) fail(`thumbnail: ${thumb.status} ${thumb.headers.get("content-type")}`);
if (thumb.headers.get("x-content-type-options") !== "nosniff") fail("no nosniff header");
ok("thumbnail via mxcUrlToHttp(96, 96, crop, useAuthentication)");

// 4. media config as the SDK reads it
const config = await cb.getMediaConfig(true);
if (!(config["m.upload.size"] > 0)) fail("media config: " + JSON.stringify(config));
ok(`getMediaConfig: m.upload.size ${config["m.upload.size"]}`);
console.log("OK");
process.exit(0);
