// `facet generate CHECKPOINT_DIR (--prompt TEXT | --prompts FILE.jsonl) [--out answers.jsonl]`: answers
// from a LLaMA-family checkpoint directory as the hub ships them (config.json, model.safetensors
// [.index.json], tokenizer.model), optionally with a PEFT LoRA adapter and a chat template. One
// prompt printed to the terminal streams its tokens as they come; a JSON-lines file of prompts
// ({"prompt": "..."} per line, other fields such as "id" copied through) is answered in batches
// and written as JSON lines ({..., "answer", "finish_reason", "tokens"}).
#include "core/error.h"
#include "core/file_io.h"
#include "core/log.h"
#include "data/text/chat_template.h"
#include "data/text/tokenizer.h"
#include "models/adapters/adapter.h"
#include "models/adapters/peft.h"
#include "models/build.h"
#include "models/llm/generate.h"
#include "models/llm/llama.h"
#include "tools/cli/commands.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>

namespace facet::cli {

namespace {

struct Args {
  std::string checkpoint, prompt, prompts, out, adapter, chat = "none", system, dtype = "float32";
  bool system_set = false;
  int64_t max_new_tokens = 128, top_k = 0, batch = 8;
  double temperature = 1.0, top_p = 1.0, repetition_penalty = 1.0;
  uint64_t seed = 0;
  bool sample = false;
  std::vector<std::string> stop;
};

std::vector<int64_t> encode(const data::text::Tokenizer& tok, const Args& a, const std::string& prompt) {
  if (a.chat == "none") return tok.encode(prompt, true, false);
  data::text::ChatOptions o;
  o.style = a.chat;
  if (a.system_set) o.system = a.system;
  return data::text::encode_prompt(tok, {{data::Turn::Role::human, prompt}}, o);
}

// The printable part of a streamed answer: held back while it ends inside a UTF-8 sequence that the
// next byte-fallback token completes (SentencePiece decodes a partial sequence as U+FFFD).
size_t printable_length(const std::string& text) {
  static const std::string replacement = "\xEF\xBF\xBD";
  size_t n = text.size();
  while (n >= replacement.size() && text.compare(n - replacement.size(), replacement.size(), replacement) == 0) n -= replacement.size();
  return n;
}

void run(const Args& a) {
  if (a.prompt.empty() == a.prompts.empty()) fail("generate: give exactly one of --prompt and --prompts");
  const auto start = std::chrono::steady_clock::now();
  auto model = models::llm::from_pretrained(a.checkpoint, {.dtype = models::parse_dtype(a.dtype, "--dtype")});
  if (!a.adapter.empty()) {
    const auto layers = models::load_peft_adapter(*model, a.adapter);
    models::merge_adapters(*model);  // inference: no extra path per layer
    log::info("LoRA adapter {} on {} layers (merged)", a.adapter, layers.size());
  }
  auto tok = data::text::Tokenizer::load(a.checkpoint);
  if (tok.vocab_size() > model->config().vocab_size)
    fail("{}: the tokenizer has {} pieces but the model only {} embeddings", a.checkpoint, tok.vocab_size(), model->config().vocab_size);
  models::llm::GenerationOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.do_sample = a.sample;
  o.temperature = a.temperature;
  o.top_k = a.top_k;
  o.top_p = a.top_p;
  o.repetition_penalty = a.repetition_penalty;
  o.seed = a.seed;
  o.eos_token_ids = model->config().eos_token_ids;
  o.stop_strings = a.stop;
  o.pad_token_id = tok.pad_id;
  const models::llm::Decoder decode = [&](const std::vector<int64_t>& ids) { return tok.decode(ids); };
  log::info("loaded {} ({} parameters, {}) in {:.1f} s", a.checkpoint, model->config().num_parameters(), a.dtype,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());

  if (!a.prompt.empty() && a.out.empty()) {
    std::vector<int64_t> so_far;
    size_t shown = 0;
    const auto answers = models::llm::generate(*model, {encode(tok, a, a.prompt)}, o, decode, [&](size_t, int64_t token) {
      so_far.push_back(token);
      const std::string text = tok.decode(so_far);
      const size_t n = printable_length(text);
      if (n > shown) {
        std::fwrite(text.data() + shown, 1, n - shown, stdout);
        std::fflush(stdout);
        shown = n;
      }
    });
    // What the stream held back (the final text cuts a stop string and leaves an EOS out).
    const auto& text = answers[0].text;
    if (text.size() > shown) std::fwrite(text.data() + shown, 1, text.size() - shown, stdout);
    std::fputs("\n", stdout);
    return;
  }

  std::vector<nlohmann::json> records;
  if (!a.prompt.empty()) {
    records.push_back({{"prompt", a.prompt}});
  } else {
    std::ifstream in(a.prompts);
    if (!in) fail("{}: cannot open", a.prompts);
    std::string line;
    for (int line_no = 1; std::getline(in, line); ++line_no) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("{}:{}: not JSON: {}", a.prompts, line_no, e.what());
      }
      if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
        fail("{}:{}: expected an object with a string \"prompt\"", a.prompts, line_no);
      records.push_back(std::move(j));
    }
  }
  std::string output;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t generated = 0;
  for (size_t first = 0; first < records.size(); first += static_cast<size_t>(a.batch)) {
    const size_t last = std::min(records.size(), first + static_cast<size_t>(a.batch));
    std::vector<std::vector<int64_t>> prompts;
    for (size_t i = first; i < last; ++i) prompts.push_back(encode(tok, a, records[i]["prompt"].get<std::string>()));
    const auto answers = models::llm::generate(*model, prompts, o, decode);
    for (size_t i = first; i < last; ++i) {
      auto& r = records[i];
      const auto& g = answers[i - first];
      r["answer"] = g.text;
      r["finish_reason"] = g.finish_reason;
      r["tokens"] = g.tokens.size();
      generated += static_cast<int64_t>(g.tokens.size());
      output += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("{} answers, {} tokens in {:.1f} s ({:.1f} tokens/s)", records.size(), generated, seconds,
            seconds > 0 ? static_cast<double>(generated) / seconds : 0.0);
  if (a.out.empty()) std::fputs(output.c_str(), stdout);
  else {
    write_file_atomic(a.out, output);
    log::info("wrote {}", a.out);
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("generate", "Answer prompts with a LLaMA-family checkpoint (streams a single prompt's tokens)");
  cmd->add_option("checkpoint", a->checkpoint, "Directory with config.json, model.safetensors[.index.json], tokenizer.model")
      ->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt", a->prompt, "One prompt");
  cmd->add_option("--prompts", a->prompts, "JSON lines, {\"prompt\": ...} each (other fields are copied)")->check(CLI::ExistingFile);
  cmd->add_option("--out", a->out, "Write the answers as JSON lines here instead of printing them");
  cmd->add_option("--adapter", a->adapter, "A PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors)");
  cmd->add_option("--chat", a->chat, "Chat template around each prompt: none (default), llama2, vicuna_v1, minigpt_v2");
  cmd->add_option("--system", a->system, "System message for the chat template")->each([a](const std::string&) { a->system_set = true; });
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "Most tokens per answer (default 128)");
  cmd->add_flag("--sample", a->sample, "Sample instead of greedy decoding");
  cmd->add_option("--temperature", a->temperature, "Sampling temperature (default 1)");
  cmd->add_option("--top-k", a->top_k, "Sample among the k most likely tokens (0 = all; default 0)");
  cmd->add_option("--top-p", a->top_p, "Nucleus sampling mass (default 1 = off)");
  cmd->add_option("--repetition-penalty", a->repetition_penalty, "transformers' repetition penalty (default 1 = off)");
  cmd->add_option("--seed", a->seed, "Sampling seed (default 0)");
  cmd->add_option("--stop", a->stop, "Stop strings (repeatable)");
  cmd->add_option("--batch", a->batch, "Prompts generated together (default 8)")->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", a->dtype, "float32 (default), bfloat16 or float16");
  cmd->callback([a] { run(*a); });
}

}  // namespace facet::cli
