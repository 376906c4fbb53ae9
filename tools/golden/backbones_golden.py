"""Golden outputs of torchvision ResNets and transformers ViT / ViT-MAE, for Facet's backbone parity tests.

No weights are stored (a ResNet-50 alone is 100 MB). Both sides instead regenerate the same weights
with the protocol below, run the same seeded input, and compare outputs.

Deterministic weights protocol "facet-golden-init-v1" (golden_init() below; the C++ side repeats it):
  - sd = model.state_dict(); iterate over sorted(sd.keys()) (plain Python string sort of the
    reference library's names, so "layers.10.x" sorts before "layers.2.x");
  - non-floating tensors (num_batches_tracked) are skipped and kept as they are;
  - the i-th floating tensor in that order (i counts floating tensors only, from 0) gets
    g = torch.Generator().manual_seed(1000 + i) (a fresh CPU generator per tensor) and becomes,
    as float32, with shape = the tensor's shape:
      * name ends with "running_var":           torch.rand(shape, generator=g) + 0.5
      * name ends with "running_mean":          0.1 * torch.randn(shape, generator=g)
      * 1-D and name ends with "weight":        1 + 0.1 * torch.randn(shape, generator=g)
      * 1-D and name ends with "bias":          0.1 * torch.randn(shape, generator=g)
      * >= 2-D and name ends with "weight":     torch.randn(shape, generator=g) / sqrt(numel / shape[0])
      * anything else (cls_token, position_embeddings, ...): 0.02 * torch.randn(shape, generator=g)
    (the rules are tried in that order; sqrt is Python's math.sqrt of a float, the division is
    tensor / Python float);
  - model.load_state_dict(sd) (strict); model.eval(); float32; forward under torch.no_grad().
  The script checks that applying the protocol twice gives identical tensors, and that the loaded
  model's state_dict equals what the protocol produced.

Inputs: x = torch.randn(shape, generator=torch.Generator().manual_seed(7)); the MAE noise is
torch.rand([1, 196], generator=torch.Generator().manual_seed(11)). The reference forward runs with
torch.set_num_threads(1) so that reruns are bit-identical.

Writes under tests/fixtures/backbones/ (float32 tensors unless noted; every file's __metadata__ has
"protocol", "source", "num_parameters", "num_parameters_by_prefix" (JSON: top-level child module ->
parameter count), "num_parameters_published" + "published" (the released checkpoint the count
belongs to), "state_dict_names" (JSON list, module order), "state_dict_shapes" (JSON: name -> shape,
so the C++ side can regenerate the reference tensors by name) and the config values needed to rebuild it):
  resnet18.safetensors    torchvision resnet18 (num_classes=1000): "input" [2,3,64,64], "layer1".."layer4",
                          "pooled" [2,512] (avgpool + flatten), "logits" [2,1000] (fc)
  resnet34.safetensors    "input" [2,3,64,64], "pooled" [2,512], "logits" [2,1000]
  resnet50.safetensors    "input" [1,3,224,224], "pooled" [1,2048], "logits" [1,1000]
  resnet101.safetensors   "input" [2,3,64,64], "pooled" [2,2048], "logits" [2,1000]
  vit_b16.safetensors     transformers ViTModel, ViT-B/16 config, add_pooling_layer=False, eager
                          attention: "input" [1,3,224,224], "last_hidden_state" [1,197,768] (after the
                          final layernorm), "hidden_state_4", "hidden_state_8" [1,197,768]
                          (output_hidden_states=True: hidden_states[k] = output of the k-th block,
                          hidden_states[0] = embeddings; no final layernorm on these)
  vit_mae_b16.safetensors transformers ViTMAEModel, ViT-B/16 MAE config (mask_ratio 0.75), eager
                          attention: "input" [1,3,224,224], "noise" [1,196], "last_hidden_state"
                          [1,50,768] (CLS + 49 kept tokens), "mask" [1,196] (1 = removed),
                          "ids_restore" [1,196] int64
  The ViT files' metadata also holds "checkpoint_names": JSON map from transformers 5.x module
  names to the names inside the published hub checkpoints (the legacy
  encoder.layer.N.attention.attention.query.* layout), from transformers' own revert_weight_conversion.

safetensors writes __metadata__ from a Rust HashMap, so its key order changes from run to run;
save() rewrites the header with the metadata keys sorted (same bytes otherwise) so that reruns give
byte-identical files.

Run `make goldens` (or this script with the project's venv python) to regenerate.
"""
import json
import math
import os
import sys

import torch
import torchvision
import transformers
from golden_io import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "backbones")
PROTOCOL = "facet-golden-init-v1"


def golden_state_dict(model: torch.nn.Module) -> dict:
    """The protocol's tensors for `model` (the model itself is not changed)."""
    sd = model.state_dict()
    out, i = {}, 0
    for name in sorted(sd.keys()):
        t = sd[name]
        if not t.is_floating_point():
            out[name] = t.clone()
            continue
        assert t.dtype == torch.float32, (name, t.dtype)
        g = torch.Generator().manual_seed(1000 + i)
        i += 1
        shape = tuple(t.shape)
        if name.endswith("running_var"):
            v = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("running_mean"):
            v = 0.1 * torch.randn(shape, generator=g)
        elif t.dim() == 1 and name.endswith("weight"):
            v = 1 + 0.1 * torch.randn(shape, generator=g)
        elif t.dim() == 1 and name.endswith("bias"):
            v = 0.1 * torch.randn(shape, generator=g)
        elif t.dim() >= 2 and name.endswith("weight"):
            v = torch.randn(shape, generator=g) / math.sqrt(t.numel() / shape[0])
        else:
            v = 0.02 * torch.randn(shape, generator=g)
        out[name] = v.to(torch.float32)
    return out


def golden_init(model: torch.nn.Module) -> torch.nn.Module:
    """Apply the protocol, checking it is reproducible and that loading kept every value."""
    first, second = golden_state_dict(model), golden_state_dict(model)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"protocol not deterministic at {name}"
    model.load_state_dict(first, strict=True)
    model.eval()
    loaded = model.state_dict()
    assert loaded.keys() == first.keys()
    for name in first:
        assert torch.equal(loaded[name], first[name]), f"load_state_dict changed {name}"
    return model


def seeded_randn(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def common_metadata(model: torch.nn.Module, source: str, published: str, published_count: int) -> dict:
    assert not list(model.named_parameters(recurse=False)), "parameters directly on the root module"
    by_prefix = {name: count(child) for name, child in model.named_children()}
    total = count(model)
    assert sum(by_prefix.values()) == total
    return {
        "protocol": PROTOCOL,
        "source": source,
        "num_parameters": str(total),
        "num_parameters_by_prefix": json.dumps(by_prefix),
        "num_parameters_published": str(published_count),
        "published": published,
        "state_dict_names": json.dumps(list(model.state_dict().keys())),
        "state_dict_shapes": json.dumps({k: list(v.shape) for k, v in model.state_dict().items()}),
        "torch": torch.__version__,
    }


# --- torchvision ResNets -------------------------------------------------------------------------

RESNETS = {
    # name: (input shape, store the layer1..layer4 outputs, published weights enum)
    "resnet18": ([2, 3, 64, 64], True, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": ([2, 3, 64, 64], False, torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": ([1, 3, 224, 224], False, torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
    "resnet101": ([2, 3, 64, 64], False, torchvision.models.ResNet101_Weights.IMAGENET1K_V2),
}


def resnet_golden(name: str) -> None:
    shape, stages, weights = RESNETS[name]
    model = golden_init(getattr(torchvision.models, name)(weights=None, num_classes=1000))
    x = seeded_randn(shape, 7)
    out = {"input": x}
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            h = getattr(model, stage)(h)
            if stages:
                out[stage] = h
        pooled = torch.flatten(model.avgpool(h), 1)
        logits = model.fc(pooled)
        assert torch.equal(logits, model(x))
    out["pooled"], out["logits"] = pooled, logits

    block = type(model.layer1[0]).__name__
    meta = common_metadata(model, f"torchvision {torchvision.__version__} {name}",
                           f"torchvision {name} {weights}", weights.meta["num_params"])
    assert meta["num_parameters"] == str(weights.meta["num_params"])
    meta.update({
        "block": block,
        "layers": json.dumps([len(getattr(model, s)) for s in ("layer1", "layer2", "layer3", "layer4")]),
        "expansion": str(model.layer1[0].expansion),
        "num_classes": "1000",
        "bn_eps": repr(model.bn1.eps),
        "input_seed": "7",
    })
    save(out, os.path.join(OUT, f"{name}.safetensors"), meta)


# --- transformers ViT / ViT-MAE ------------------------------------------------------------------

def checkpoint_names(model) -> dict:
    """transformers 5.x module name -> the name in the published (legacy layout) checkpoint."""
    from transformers.core_model_loading import revert_weight_conversion
    mapping = {}
    for name, t in model.state_dict().items():
        reverted = list(revert_weight_conversion(model, {name: t}).keys())
        assert len(reverted) == 1, (name, reverted)
        mapping[name] = reverted[0]
    return mapping


def vit_config_metadata(config) -> dict:
    act = transformers.activations.ACT2FN[config.hidden_act]
    return {
        "hidden_size": str(config.hidden_size),
        "num_hidden_layers": str(config.num_hidden_layers),
        "num_attention_heads": str(config.num_attention_heads),
        "intermediate_size": str(config.intermediate_size),
        "patch_size": str(config.patch_size),
        "image_size": str(config.image_size),
        "num_channels": str(config.num_channels),
        "hidden_act": config.hidden_act,
        "hidden_act_class": f"{type(act).__name__} ({getattr(act, 'act', act)})",
        "layer_norm_eps": repr(config.layer_norm_eps),
        "qkv_bias": json.dumps(bool(config.qkv_bias)),
        "attn_implementation": config._attn_implementation,
        "config": config.to_json_string(use_diff=False),
        "input_seed": "7",
    }


def meta_count(build) -> int:
    """Parameter count of a model built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return count(build())


def vit_golden() -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTModel
    b16 = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
               patch_size=16, image_size=224, attn_implementation="eager")
    config = ViTConfig(**b16)
    model = golden_init(ViTModel(config, add_pooling_layer=False))
    assert model.config._attn_implementation == "eager"
    x = seeded_randn([1, 3, 224, 224], 7)
    with torch.no_grad():
        res = model(pixel_values=x, output_hidden_states=True)
        hs = res.hidden_states
        assert len(hs) == 13
        h = model.embeddings(x)
        assert torch.equal(h, hs[0]), "hidden_states[0] is not the embeddings output"
        for k, layer in enumerate(model.layers, start=1):
            h = layer(h, None)
            assert torch.equal(h, hs[k]), f"hidden_states[{k}] is not block {k}'s output"
        assert torch.equal(model.layernorm(h), res.last_hidden_state)
    out = {"input": x, "last_hidden_state": res.last_hidden_state,
           "hidden_state_4": hs[4], "hidden_state_8": hs[8]}

    published = meta_count(lambda: ViTModel(config, add_pooling_layer=True))
    classifier = meta_count(lambda: ViTForImageClassification(ViTConfig(**b16, num_labels=1000)))
    meta = common_metadata(model, f"transformers {transformers.__version__} ViTModel",
                           "google/vit-base-patch16-224-in21k ViTModel (with pooler: dense 768x768 + tanh); "
                           f"google/vit-base-patch16-224 ViTForImageClassification (1000 classes, no pooler) "
                           f"has {classifier}", published)
    meta.update(vit_config_metadata(config))
    meta.update({
        "add_pooling_layer": "false",
        "hidden_states_note": "hidden_state_k = hidden_states[k] = output of block k (1-based), "
                              "hidden_states[0] = embeddings; the final layernorm is applied only to last_hidden_state",
        "checkpoint_names": json.dumps(checkpoint_names(model)),
    })
    save(out, os.path.join(OUT, "vit_b16.safetensors"), meta)


def vit_mae_golden() -> None:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel
    config = ViTMAEConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                          patch_size=16, image_size=224, mask_ratio=0.75, attn_implementation="eager")
    model = golden_init(ViTMAEModel(config))
    assert model.config._attn_implementation == "eager"
    x = seeded_randn([1, 3, 224, 224], 7)
    noise = torch.rand([1, 196], generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        res = model(pixel_values=x, noise=noise)
        # Re-derive the masking by hand so the description in the report is checked, not assumed.
        len_keep = int(196 * (1 - config.mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        pos = model.embeddings.position_embeddings
        patches = model.embeddings.patch_embeddings.projection(x).flatten(2).transpose(1, 2) + pos[:, 1:, :]
        kept = torch.gather(patches, 1, ids_shuffle[:, :len_keep].unsqueeze(-1).repeat(1, 1, 768))
        h = torch.cat([model.embeddings.cls_token + pos[:, :1, :], kept], dim=1)
        for layer in model.layers:
            h = layer(h, None)
        assert torch.equal(model.layernorm(h), res.last_hidden_state)
        mask = torch.ones(1, 196)
        mask[:, :len_keep] = 0
        assert torch.equal(torch.gather(mask, 1, ids_restore), res.mask)
        assert torch.equal(ids_restore, res.ids_restore)
    assert res.last_hidden_state.shape == (1, 1 + len_keep, 768)
    out = {"input": x, "noise": noise, "last_hidden_state": res.last_hidden_state,
           "mask": res.mask, "ids_restore": res.ids_restore}
    assert res.ids_restore.dtype == torch.int64

    pretraining = meta_count(lambda: ViTMAEForPreTraining(config))
    meta = common_metadata(model, f"transformers {transformers.__version__} ViTMAEModel",
                           "facebook/vit-mae-base encoder (ViTMAEModel; counts the frozen sin-cos position "
                           f"embeddings, 197x768); ViTMAEForPreTraining with the decoder has {pretraining}",
                           count(model))
    meta.update(vit_config_metadata(config))
    meta.update({
        "mask_ratio": repr(config.mask_ratio),
        "len_keep": str(len_keep),
        "noise_seed": "11",
        "decoder_hidden_size": str(config.decoder_hidden_size),
        "decoder_num_hidden_layers": str(config.decoder_num_hidden_layers),
        "decoder_num_attention_heads": str(config.decoder_num_attention_heads),
        "decoder_intermediate_size": str(config.decoder_intermediate_size),
        "num_parameters_pretraining": str(pretraining),
        "checkpoint_names": json.dumps(checkpoint_names(model)),
    })
    save(out, os.path.join(OUT, "vit_mae_b16.safetensors"), meta)


def main() -> int:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    os.makedirs(OUT, exist_ok=True)
    for name in RESNETS:
        resnet_golden(name)
    vit_golden()
    vit_mae_golden()
    print(f"wrote {os.path.normpath(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
