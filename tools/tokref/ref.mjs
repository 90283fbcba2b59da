// Encodes testdata/tokenizer/corpus.jsonl with the reference encoder
// (@lenml/tokenizers, a port of transformers.js that follows Hugging Face
// transformers) for each tokenizer fetched by tools/setup/tokenizers.sh,
// and writes testdata/tokenizer/<name>.ids.jsonl: per corpus line
//   {"plain": ids without special tokens, "special": ids with them,
//    "decoded": decode(plain) with clean-up of spaces turned off}
// The outputs are committed; Go tests compare against them, so only the
// tokenizer files (not node) are needed to run the tests.
// Run from the repository root: node tools/tokref/ref.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const lenml = resolve(".cache/npm/node_modules/@lenml");
const { TokenizerLoader } = await import(
  pathToFileURL(`${lenml}/tokenizers/dist/main.mjs`).href
);

const corpus = readFileSync("testdata/tokenizer/corpus.jsonl", "utf8")
  .split("\n")
  .filter((l) => l !== "")
  .map((l) => JSON.parse(l));

for (const name of ["llama3", "qwen3", "gemma3", "llama2", "gpt4o"]) {
  const dir = `${lenml}/tokenizer-${name}/models`;
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
    tokenizerConfig: JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")),
  });
  const out = corpus.map((text) => {
    // add_special_tokens defaults to true in both transformers and
    // transformers.js; we spell both settings out.
    const plain = tok.encode(text, { add_special_tokens: false });
    const special = tok.encode(text, { add_special_tokens: true });
    // decode refuses an empty list; "" is what transformers returns.
    const decoded =
      plain.length === 0
        ? ""
        : tok.decode(plain, {
            skip_special_tokens: false,
            clean_up_tokenization_spaces: false,
          });
    return JSON.stringify({ plain, special, decoded });
  });
  writeFileSync(`testdata/tokenizer/${name}.ids.jsonl`, out.join("\n") + "\n");
  console.log(`${name}: ${corpus.length} strings`);
}
