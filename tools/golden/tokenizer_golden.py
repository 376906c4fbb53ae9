"""A tiny Llama-style SentencePiece model trained here (no download) and the ids transformers'
LlamaTokenizer gives for a varied corpus, for Facet's tokenizer parity test (tests/llm/test_tokenizer.cpp).

The model is trained with Llama-2's tokenizer settings (BPE, byte fallback, split digits, identity
normalisation, whitespace kept, dummy prefix, unk 0 / bos 1 / eos 2, no pad) on a synthetic
multilingual corpus, vocab 600. Writes tests/fixtures/llm/tokenizer/:
  tokenizer.model           the SentencePiece model
  tokenizer_config.json     {"tokenizer_class": "LlamaTokenizer", "legacy": true, ...} as Llama-2 ships
  golden.json               {"cases": [{"text", "sp_ids" (plain sentencepiece encode, Meta's reference),
                             "hf_ids" (the slow LlamaTokenizer, use_fast=False, legacy=True: BOS + text,
                             special tokens in the text split out — SlowLlamaTokenizer below), "hf_fast_ids"
                             (transformers 5's LlamaTokenizer, a tokenizers BPE conversion, for the record: it
                             differs around leading spaces and special tokens), "decoded" (sentencepiece's
                             decode of hf_ids without control tokens)}], versions}
Run with the project's venv python.
"""
import io
import json
import os
import random
import shutil

import sentencepiece as spm
import transformers
from transformers import LlamaTokenizer
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "llm", "tokenizer")

WORDS = ("the a patient image shows lesion left right upper lobe opacity nodule effusion no finding face smiles "
         "action unit brow raiser cheek lip corner puller emotion happy sad surprise answer question describe "
         "which where is are with without and or of in on at chest x-ray heart size normal abnormal").split()
OTHER = ["胸部X光片显示右上肺叶有结节。", "Лицо выражает удивление и радость.", "Δείξε μου την εικόνα.",
         "表情は幸せそうです", "مرحبا بالعالم", "🙂 😮 👍", "naïve café résumé", "x² ≤ 3·y ± 1"]


def corpus(n=3000, seed=0):
    r = random.Random(seed)
    lines = []
    for i in range(n):
        k = r.randint(3, 14)
        s = " ".join(r.choice(WORDS) for _ in range(k))
        if r.random() < 0.3:
            s += f" {r.randint(0, 99999)}"
        if r.random() < 0.2:
            s = s.capitalize() + "."
        if r.random() < 0.1:
            s += "  " + r.choice(OTHER)
        if r.random() < 0.05:
            s = "    " + s + "\t" + s
        lines.append(s)
    return lines


CASES = [
    "Hello world",
    "the patient image shows a nodule in the right upper lobe",
    " leading space",
    "two  spaces   and three",
    "trailing space ",
    "line one\nline two\n\nline four",
    "tabs\tand\tnewlines\n",
    "digits 1234567890 and 3.14159 and 2026-12-05",
    "胸部X光片显示右上肺叶有结节。",
    "Лицо выражает удивление.",
    "emoji 🙂 and symbols ≤ ± ·",
    "unseen characters: ẞ ø ℵ 𝔸",
    "<s>[INST] What is shown? [/INST] A nodule. </s><s>[INST] Where? [/INST]",
    "text with </s> in the middle",
    "ASSISTANT: the answer</s>USER: next",
    "",
    " ",
    "\n",
]


class SlowLlamaTokenizer(SentencePieceBackend):
    """transformers 4's slow LlamaTokenizer (use_fast=False), which transformers 5 dropped, rebuilt on
    transformers 5's own slow machinery: special tokens split out of the text by its trie, each
    remaining segment encoded by sentencepiece (legacy=True: with the dummy prefix), BOS in front."""
    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask"]

    def build_inputs_with_special_tokens(self, a, b=None):
        out = [self.bos_token_id] + a
        return out if b is None else out + [self.bos_token_id] + b


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=model, vocab_size=600, model_type="bpe",
        byte_fallback=True, split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=0.9995, num_threads=1, max_sentence_length=4192, minloglevel=2)
    path = os.path.join(OUT, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(model.getvalue())
    config = {"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False,
              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
              "clean_up_tokenization_spaces": False, "model_max_length": 4096}
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    sp = spm.SentencePieceProcessor(model_file=path)
    slow = SlowLlamaTokenizer(vocab_file=path, legacy=True, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast = LlamaTokenizer.from_pretrained(OUT)
    cases = []
    for text in CASES:
        hf = slow(text).input_ids
        cases.append({"text": text, "sp_ids": sp.encode(text), "hf_ids": hf, "hf_fast_ids": fast(text).input_ids,
                      "decoded": sp.decode([i for i in hf if not sp.is_control(i)])})
    golden = {"vocab_size": sp.get_piece_size(), "sentencepiece": spm.__version__,
              "transformers": transformers.__version__, "cases": cases}
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
    same = sum(c["hf_ids"][1:] == c["sp_ids"] for c in cases)
    fast_same = sum(c["hf_ids"] == c["hf_fast_ids"] for c in cases)
    print(f"vocab {sp.get_piece_size()}, {len(cases)} cases, slow == bos + sp on {same}, fast == slow on {fast_same}")


SEED = 1


def tiny_chat():
    """tests/fixtures/llm/tiny_chat: a checkpoint directory as users have them (config.json, weights,
    tokenizer.model, tokenizer_config.json) with a 2-layer random Llama over the tiny vocabulary, for
    `facet generate`; golden.json holds transformers' greedy answer to a prompt."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    out = os.path.join(OUT, "..", "tiny_chat")
    shutil.rmtree(out, ignore_errors=True)
    config = LlamaConfig(vocab_size=600, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=1,
                         eos_token_id=2, pad_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g) if p.dim() == 1 else
                    torch.randn(p.shape, generator=g) * (0.5 if "embed" in name else 1 / p.shape[1] ** 0.5))
    model.save_pretrained(out)
    for f in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(OUT, f), out)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
    prompt = "the patient image shows"
    ids = torch.tensor([[1] + sp.encode(prompt)])
    with torch.no_grad():
        new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                             eos_token_id=2, pad_token_id=0)[0, ids.shape[1]:].tolist()
    answer = sp.decode([t for t in new if t != 2])
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump({"prompt": prompt, "prompt_ids": ids[0].tolist(), "greedy_ids": new, "greedy_text": answer}, f, indent=1,
                  ensure_ascii=False)
    print("tiny_chat greedy:", new, repr(answer))


if __name__ == "__main__":
    main()
    tiny_chat()
