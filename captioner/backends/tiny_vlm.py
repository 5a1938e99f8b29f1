"""A tiny random LLaVA (CLIP vision tower + Llama decoder) saved as a real ``from_pretrained`` folder.

It exists so the ``hf`` backend can be tested and benchmarked offline on CPU through exactly the code
path a real checkpoint takes: ``AutoProcessor.from_pretrained`` (tokenizer + image processor + chat
template) and ``AutoModelForImageTextToText.from_pretrained``. Its answers are gibberish; what it
preserves is the *mechanics* of a VLM (image placeholder tokens expanded by the processor, a tokenizer
saved with right padding that the backend must switch to left, a KV-cached decoder) and roughly the
*economics* of serving one (see ``TEXT_SIZES``), so that batching pays off as it does on real models.

Pieces (all built in memory, no hub):

- tokenizer: byte-level BPE trained with ``tokenizers`` on a small English corpus, plus ``<s>``,
  ``</s>``, ``<pad>``, ``<unk>`` and ``<image>``; wrapped as ``PreTrainedTokenizerFast``;
- image processor: ``CLIPImageProcessorPil`` (the PIL path; torchvision is absent) at 32×32;
- chat template: LLaVA-1.5 style ``USER: <image>\\n... ASSISTANT:``;
- model: ``LlavaForConditionalGeneration(LlavaConfig(CLIPVisionConfig, LlamaConfig))``. With patch 8
  at 32 px the tower yields 16 patches + CLS; the ``default`` feature strategy drops the CLS, so the
  processor is told ``num_additional_image_tokens=1`` and writes 16 ``<image>`` tokens per image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
IMAGE_SIZE = 32
PATCH_SIZE = 8

# Sizes: many thin layers. On a GPU, a real VLM's decode step costs about the same for 1 or 16 sequences
# (reading the weights dominates) and prefilling a prompt costs a few decode steps. On 2 CPU cores the
# closest analogue is a decoder whose step cost is mostly fixed (8 layers) and whose per-token compute is
# small (hidden 64). Measured by bench/hf_batching.py (1 thread): prefill of a ~190-token two-image prompt
# ~13 ms (~4 decode steps); a decode step 3.3 ms at batch 1, 10 ms at batch 16. A wider decoder (hidden
# 256-512) is compute-bound on CPU already at batch 16, and batching then buys < 2x: CPU economics, not
# those of a VLM server. initializer_range 0.1 (not 0.02) spreads the logits (std ~0.8), so greedy
# answers depend on the prompt and the image, and near-ties that float noise could flip are rare.
TEXT_SIZES = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=8, num_attention_heads=2,
                  num_key_value_heads=2, max_position_embeddings=2048, initializer_range=0.1)
VISION_SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=32, initializer_range=0.1)
VOCAB_SIZE = 2048

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{% endif %}{{ '\\n' }}"
    "{% else %}"
    "{{ message['role'].upper() + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{{ '\\n' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# Ordinary English (with caption and prompt vocabulary), so the BPE merges cover such text at about
# 1.2 tokens per word, like a real tokenizer; anything else still encodes, byte by byte.
_WORDS = """
the to of as a an and or but if then than that this these those there here where when while which who whom whose
what why how all any both each every few more most other some such no nor not only own same so too very
can will just should would could may might must shall do does did done doing be is are was were been being
have has had having get gets got make makes made take takes took go goes went come comes came see sees saw
look looks looking looked show shows shown showing appear appears appeared seem seems become becomes became
remain remains stay stays move moves moving moved walk walks walking run runs running drive drives driving
fly flies flying fall falls falling rise rises rising turn turns turning open opens opened close closes
closed enter enters entered leave leaves left right up down above below over under into onto out off on in
at by for from with without about across along around between behind beside near far toward towards away
through after before during again once first second third last next previous new old same different other
one two three four five six seven eight nine ten zero half several many much little large small big tiny
long short tall wide narrow high low bright dark light heavy fast slow quick quiet loud warm cold hot clear
red green blue yellow orange purple pink brown black white grey gray gold silver colour color colours colors
man woman men women person people jacket shirt hat child children boy girl dog cat bird birds horse car cars bus truck bike
bicycle train boat plane road street sidewalk building house door window wall floor room table chair tree
trees grass sky sun cloud clouds water sea river beach mountain hill field city town park garden light
camera shot frame frames scene scenes video clip image images picture key keyframe background foreground
object objects shape shapes circle square triangle rectangle ball disc line edge center centre corner side
top bottom middle position positions size sizes motion movement direction speed pan pans panning tilt tilts
zoom zooms zooming cut fade lighting brighter darker larger smaller closer farther higher lower changed
change changes changing still static moving steady slowly quickly gradually suddenly briefly finally
describe description detail detailed details caption captions captioner differential summary summarize
write one sentence sentences paragraph word words plain english answer question questions prompt text
expert skill skills role constraint constraints input output structured timestamp timestamps second
seconds time times minute start end begin begins beginning ending order ordered event events action
actions invent invented visible shown compare compared comparison between previous following now
use uses used mention mentions precise precisely exactly never always
you your we our they their it its he his she her i my me us them him
""".split()
_CORPUS = [" " + " ".join(_WORDS), " " + " ".join(w.capitalize() for w in _WORDS),
           "0 1 2 3 4 5 6 7 8 9 10 0.0 0.5 1.0 2.0 4.0 . , : ; ! ? ' \" ( ) - s"] * 8


def fit_tokenizer(corpus: list[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer fitted to ``corpus`` (at most ``vocab_size`` entries, the special tokens
    included) that puts ``<s>`` in front of every text; any other text still encodes, byte by byte."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    # Right padding, the usual saved default (for training): the backend must switch it to left itself.
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens={"image_token": "<image>"},
                                   padding_side="right")


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny LLaVA's tokenizer: fitted to a small English corpus with caption and prompt vocabulary."""
    return fit_tokenizer(_CORPUS)


def build_llava(out_dir: str | Path, tokenizer: PreTrainedTokenizerFast, text_sizes: dict, vision_sizes: dict,
                seed: int = 0, feature_layer: int = -2, image_processor=None) -> Path:
    """A LLaVA (CLIP vision tower + Llama decoder) of the given sizes, with ``tokenizer``, the LLaVA-1.5 chat
    template and an image processor (default: every image resized to the tower's square, no crop), initialised
    from ``seed`` (the caller's RNG state is left alone) and saved into ``out_dir`` (returned)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size, patch = vision_sizes["image_size"], vision_sizes["patch_size"]
    if image_processor is None:
        image_processor = CLIPImageProcessorPil(size={"height": size, "width": size}, do_center_crop=False)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    text_config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                              **text_sizes)
    config = LlavaConfig(vision_config=CLIPVisionConfig(**vision_sizes), text_config=text_config,
                         image_token_index=processor.image_token_id, image_seq_length=(size // patch) ** 2,
                         vision_feature_select_strategy="default", vision_feature_layer=feature_layer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor.save_pretrained(out)  # the folder now loads with AutoProcessor / AutoModelForImageTextToText
    model.save_pretrained(out)
    return out


def build_tiny_llava(out_dir: str | Path, seed: int = 0) -> Path:
    """Build the tiny random LLaVA with its processor and save both into ``out_dir`` (returned)."""
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return build_llava(out_dir, build_tokenizer(), TEXT_SIZES, VISION_SIZES, seed=seed, image_processor=image_processor)


# Idefics3's image markers (its processor adds the first and the last itself; <global-img> must be in the vocabulary)
IDEFICS3_TOKENS = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]


def build_idefics3(out_dir: str | Path, tokenizer: PreTrainedTokenizerFast, text_sizes: dict, vision_sizes: dict,
                   scale_factor: int, seed: int = 0) -> Path:
    """An Idefics3 (SigLIP-style vision tower, pixel-shuffle connector, Llama decoder) of the given sizes, saved
    into ``out_dir`` (returned) with ``tokenizer``, the chat template above and an image processor that resizes
    every image to the tower's square (no splitting into tiles). The connector concatenates each
    ``scale_factor`` x ``scale_factor`` block of the tower's tokens and maps it linearly to one decoder token
    (SmolVLM's pixel shuffle), so the decoder gets ``(image_size / patch_size / scale_factor) ** 2`` tokens an
    image, each holding every patch of its block in a slot of its own."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size, patch = vision_sizes["image_size"], vision_sizes["patch_size"]
    side = size // patch
    if side % scale_factor:
        raise ValueError(f"Idefics3: {side}x{side} patches do not split into {scale_factor}x{scale_factor} blocks")
    tokenizer.add_special_tokens({"additional_special_tokens": IDEFICS3_TOKENS})
    image_processor = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": size},
                                                max_image_size={"longest_edge": size})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=(side // scale_factor) ** 2, chat_template=CHAT_TEMPLATE)
    text_config = dict(model_type="llama", vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **text_sizes)
    vision = {k: v for k, v in vision_sizes.items() if k != "projection_dim"}
    config = Idefics3Config(text_config=text_config, vision_config=vision, scale_factor=scale_factor,
                            image_token_id=processor.image_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Idefics3ForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor.save_pretrained(out)
    model.save_pretrained(out)
    return out
