// Runs Hugging Face's JavaScript tokenizers (npm @huggingface/tokenizers) over the
// strings that reference_test.go generates, so that the test can compare them
// with this package.
//
// Usage: node reference.mjs NODE_MODULES_PARENT TEXTS OUT TOKENIZER_JSON [CONFIG_JSON]
//
// TEXTS is a JSON list of base64 strings; OUT gets a list, one entry per text, of
// {"plain": ids, "special": ids, "decoded": text}. Texts are bytes: TextDecoder
// (the WHATWG decoder) turns them into the string that Hugging Face encodes, one
// U+FFFD per ill-formed subsequence.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [modules, textsPath, outPath, tokenizerPath, configPath] = process.argv.slice(2);
const require = createRequire(join(modules, "resolve.js"));
const { Tokenizer } = require("@huggingface/tokenizers");

const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const texts = JSON.parse(readFileSync(textsPath, "utf8")).map((b64) => utf8.decode(Buffer.from(b64, "base64")));
const json = JSON.parse(readFileSync(tokenizerPath, "utf8"));
const config = configPath ? JSON.parse(readFileSync(configPath, "utf8")) : {};
const tok = new Tokenizer(json, config);
const out = texts.map((text) => {
  const plain = tok.encode(text, { add_special_tokens: false }).ids;
  const special = tok.encode(text, { add_special_tokens: true }).ids;
  // decode throws on an empty list; Hugging Face's Rust decode gives "".
  const decoded = plain.length === 0 ? "" : tok.decode(plain, { clean_up_tokenization_spaces: false });
  return { plain, special, decoded };
});
writeFileSync(outPath, JSON.stringify(out));
