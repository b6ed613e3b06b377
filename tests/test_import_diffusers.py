"""Importing SD-1.5-family diffusers checkpoints: tiny random checkpoints made with diffusers and
transformers (built once per session, nothing downloaded), compared against those libraries' own modules."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from export.convert.checkpoint import ConversionError  # noqa: E402
from export.convert.diffusers import convert_diffusers, import_diffusers  # noqa: E402
from export.convert.unet import unet_config, unet_state  # noqa: E402
from export.lowering.parity import psnr  # noqa: E402
from mobile_sdk.clip_tokenizer import EXAMPLE_PROMPTS, CLIPTokenizer  # noqa: E402
from mobile_sdk.models import VideoUNet  # noqa: E402
from mobile_sdk.pipeline import VideoPipeline  # noqa: E402
from tests.bpe_fixtures import tiny_bpe  # noqa: E402

MIN_DB = 60.0
CORPUS = ("a red circle moving right on a blue background, a photo of an astronaut riding a horse on the moon; "
          "the quick brown fox jumps over the lazy dog. it's a beautiful day and we're going to the sea shore "
          "with our friends: painting, drawing, portrait, landscape, highly detailed, 4k, trending")


def write_tokenizer(folder: Path, vocab: dict, merges: list[str], max_length: int = 77) -> None:
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))


def tiny_unet(**overrides):
    config = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                  cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    return diffusers.UNet2DConditionModel(**{**config, **overrides})


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random norms and biases too (diffusers initialises them to 1 and 0, which would hide swapped names)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.fixture(scope="session")
def sd_checkpoint(tmp_path_factory) -> Path:
    """A tiny SD-1.5-layout diffusers folder: UNet, CLIP text encoder, BPE tokenizer, VAE, DDIM scheduler."""
    root = tmp_path_factory.mktemp("diffusers") / "tiny-sd"
    torch.manual_seed(0)
    unet = tiny_unet()
    vocab, merges = tiny_bpe(CORPUS)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]))
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  sample_size=16)
    for i, module in enumerate((unet, text, vae)):
        _randomize(module, i)
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    unet.save_pretrained(root / "unet")
    text.save_pretrained(root / "text_encoder")
    vae.save_pretrained(root / "vae")
    scheduler.save_pretrained(root / "scheduler")
    write_tokenizer(root / "tokenizer", vocab, merges)
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]}))
    return root


@pytest.fixture(scope="session")
def imported(sd_checkpoint) -> VideoPipeline:
    pipe = convert_diffusers(sd_checkpoint, num_frames=2, steps=4)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ours_vs_diffusers_unet(ref, ours: VideoUNet, context_dim: int) -> float:
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    hidden = torch.randn(2, 5, context_dim, generator=g)
    tau = torch.tensor([981, 41])
    with torch.no_grad():
        expected = ref(sample, tau, encoder_hidden_states=hidden).sample
        got = ours(sample[:, :, None], tau / 1000.0, hidden)[:, :, 0]
    return psnr(expected, got)


def test_unet_matches_diffusers(sd_checkpoint, imported):
    ref = diffusers.UNet2DConditionModel.from_pretrained(sd_checkpoint / "unet").eval()
    assert _ours_vs_diffusers_unet(ref, imported.unet, 32) >= MIN_DB


def test_bk_sdm_layout_matches_diffusers():
    """No middle block (BK-SDM small/tiny), attention at every level, heads per block, linear projections."""
    torch.manual_seed(1)
    ref = tiny_unet(down_block_types=("CrossAttnDownBlock2D",) * 2, up_block_types=("CrossAttnUpBlock2D",) * 2,
                    mid_block_type=None, attention_head_dim=(2, 4), use_linear_projection=True).eval()
    _randomize(ref, 5)
    cfg = unet_config(dict(ref.config), Path("unet/config.json"))
    assert not cfg.mid_block and cfg.attention_heads == (2, 4)
    ours = VideoUNet(cfg).eval()
    ours.load_state_dict(unet_state(ref.state_dict(), cfg))
    assert "mid.res0" not in ours.plan
    assert _ours_vs_diffusers_unet(ref, ours, 32) >= MIN_DB


def test_text_encoder_matches_transformers(sd_checkpoint, imported):
    ref = transformers.CLIPTextModel.from_pretrained(sd_checkpoint / "text_encoder").eval()
    ids = imported.tokenizer(["a red circle moving right", "", "the quick brown fox " * 30])
    with torch.no_grad():
        expected = ref(input_ids=ids)
        hidden, pooled = imported.text_encoder(ids)
    assert psnr(expected.last_hidden_state, hidden) >= MIN_DB
    assert psnr(expected.pooler_output, pooled) >= MIN_DB


def test_vae_matches_diffusers(sd_checkpoint, imported):
    ref = diffusers.AutoencoderKL.from_pretrained(sd_checkpoint / "vae").eval()
    vae = imported.vae_decoder.vae
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 4, 8, 8, generator=g)
    images = torch.rand(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        assert psnr(ref.decode(z / ref.config.scaling_factor).sample, vae.decode_unclamped(z)) >= MIN_DB
        mean = ref.encode(images * 2 - 1).latent_dist.mean
        assert psnr(mean * ref.config.scaling_factor, vae.encode(images, sample=False)) >= MIN_DB


def test_ddim_sampling_matches_diffusers(sd_checkpoint, imported):
    """Our steps (x += dt * v, the UNet wrapped as a velocity) reproduce diffusers' DDIM loop, guidance included."""
    ref_unet = diffusers.UNet2DConditionModel.from_pretrained(sd_checkpoint / "unet").eval()
    ref = diffusers.DDIMScheduler.from_pretrained(sd_checkpoint / "scheduler")
    ref.set_timesteps(4)
    noise = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        cond = imported.text_encoder(imported.tokenizer("a red circle"))[0]
        uncond = imported.text_encoder(imported.tokenizer(""))[0]
        x = noise[:, :, 0]
        for tau in ref.timesteps:
            e_c, e_u = (ref_unet(x, tau, encoder_hidden_states=h).sample for h in (cond, uncond))
            x = ref.step(e_u + 7.5 * (e_c - e_u), tau, x).prev_sample
        out = imported("a red circle", num_frames=1, latents=noise.clone())
    assert [round(t * 1000) for t in imported.scheduler.timesteps] == ref.timesteps.tolist()
    assert psnr(x, out.latents[:, :, 0]) >= MIN_DB


def _prompts() -> list[str]:
    rnd = random.Random(0)
    words = CORPUS.replace(",", " ").replace(";", " ").split() + [
        "don't", "we'll", "I'M", "ROCK'N'ROLL", "café", "naïve", "Ünïcödé", "東京", "タワー", "😀", "🚀✨", "42", "3.14",
        "x²", "½", "ⅷ", "...", "!!!", "--", "(a)", "#tag", "@user", "e-mail", "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "x<|endoftext|>y",
        "\t", "\n\n", "\u00a0", "\u3000", "\u200b", "\u001c", "e\u0301", "ﬁ", "İstanbul", "ǅ", "ß", "ΣΑΣ", "l'été"]
    prompts = ["", " ", "a", "A RED CIRCLE moving right", "  spaced\tout\nprompt  ", "it's we're they've i'd you'll",
               "long " * 100, *EXAMPLE_PROMPTS]
    for _ in range(300):
        prompts.append(rnd.choice(["", " "]).join(rnd.choice(words) for _ in range(rnd.randint(1, 40))))
    return prompts


def test_tokenizer_ids_match_transformers(sd_checkpoint, imported):
    ref = transformers.CLIPTokenizer.from_pretrained(sd_checkpoint / "tokenizer")
    for prompt in _prompts():
        expected = ref(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        assert imported.tokenizer.encode(prompt) == expected, repr(prompt)


def test_import_writes_a_model_folder_that_loads(sd_checkpoint, imported, tmp_path):
    out = tmp_path / "video-model"
    import_diffusers(sd_checkpoint, out, plan={"down0.*": "conv1d", "up0.attn*": "attn1d"}, num_frames=2, steps=4,
                     log=lambda _: None)
    pipe = VideoPipeline.from_pretrained(out)
    assert pipe.unet.plan.counts()["conv1d"] == 2 and pipe.config.scheduler.type == "ddim"
    assert isinstance(pipe.tokenizer, CLIPTokenizer) and pipe.tokenizer.encode("a red") == imported.tokenizer.encode("a red")
    # identity temporal layers: every frame is the image model applied to that frame
    g = torch.Generator().manual_seed(6)
    sample, hidden = torch.randn(1, 4, 2, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        video = pipe.unet(sample, torch.tensor([0.5]), hidden)
        frames = [imported.unet(sample[:, :, i : i + 1], torch.tensor([0.5]), hidden) for i in range(2)]
    assert psnr(torch.cat(frames, dim=2), video) >= MIN_DB
    with pytest.raises(ConversionError, match="--overwrite"):
        import_diffusers(sd_checkpoint, out, log=lambda _: None)


def _copy_without(src: Path, dst: Path, drop: str) -> Path:
    import shutil

    shutil.copytree(src, dst)
    (dst / drop).unlink()
    return dst


def test_bad_checkpoints_are_refused_clearly(sd_checkpoint, tmp_path):
    with pytest.raises(ConversionError, match="model_index.json: missing"):
        convert_diffusers(tmp_path)
    pickled = _copy_without(sd_checkpoint, tmp_path / "pickled", "unet/diffusion_pytorch_model.safetensors")
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ConversionError, match=r"diffusion_pytorch_model\.bin: pickle checkpoints are never loaded"):
        convert_diffusers(pickled)
    sdxl = json.loads((sd_checkpoint / "unet" / "config.json").read_text())
    with pytest.raises(ConversionError, match="SDXL"):
        unet_config({**sdxl, "addition_embed_type": "text_time"}, Path("unet/config.json"))
    t5 = _copy_without(sd_checkpoint, tmp_path / "t5", "text_encoder/config.json")
    (t5 / "text_encoder" / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5EncoderModel"]}))
    with pytest.raises(ConversionError, match="only CLIP text models"):
        convert_diffusers(t5)


def test_import_cli_errors_are_one_line(sd_checkpoint, tmp_path, capsys):
    from mobile_sdk.cli import main

    assert main(["import", "--diffusers", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere: not a folder" in err and "Traceback" not in err
    (tmp_path / "file").write_text("x")
    assert main(["import", "--diffusers", str(sd_checkpoint), "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a model folder" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_imported_model_exports_fully_delegated(sd_checkpoint, tmp_path):
    """import -> export --check through the CLI: parity passes, the UNet and decoder run entirely in XNNPACK."""
    from mobile_sdk.cli import main
    from mobile_sdk.package import open_package
    from mobile_sdk.runtime import pipeline_from_package

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"slots": {"down0.*": "conv3d", "up0.attn*": "attn1d", "mid.attn0": "attn3d"}}))
    model, pkg = tmp_path / "model", tmp_path / "tiny-sd.mobilepkg"
    assert main(["import", "--diffusers", str(sd_checkpoint), "--out", str(model), "--plan", str(plan),
                 "--frames", "2", "--steps", "3"]) == 0
    assert main(["export", "--model", str(model), "--out", str(pkg), "--check"]) == 0
    with open_package(pkg) as package:
        m = package.manifest
        delegation = {c: v["delegation"]["main"] for c, v in m["targets"]["executorch"]["components"].items()}
        assert m["targets"]["executorch"]["parity"]["passed"]
        assert m["scheduler"]["source"]["type"] == "ddim" and len(m["steps"]) == 3
        assert package.tokenizer_spec()["type"] == "clip_bpe"
        runtime = pipeline_from_package(package)
        assert runtime.tokenizer.encode("a red circle") == VideoPipeline.from_pretrained(model).tokenizer.encode("a red circle")
    for component in ("unet", "vae_decoder"):
        assert delegation[component]["flop_fraction_delegated"] >= 0.999, delegation[component]
    total = sum(d["flops_total"] for d in delegation.values())
    assert 1 - sum(d["flops_outside"] for d in delegation.values()) / total >= 0.999


def test_tokenizer_document_is_valid_and_self_checking(imported):
    """tokenizer.json v2: valid against its schema, and its examples (the apps' test vectors) are what
    transformers gives too (the same ids; checked above for our encoder on many more prompts)."""
    from mobile_sdk.contract.validate import validate_document

    spec = json.loads(json.dumps(imported.tokenizer.to_dict(), ensure_ascii=False))
    assert validate_document(spec, "tokenizer", "tokenizer.json") == 2
    again = CLIPTokenizer.from_dict(spec)
    assert all(again.encode(e["text"]) == e["ids"] and len(e["ids"]) == spec["max_length"] for e in spec["examples"])


def test_imported_model_has_the_same_function_in_the_ane_layout(sd_checkpoint):
    """The Core ML (Neural-Engine) layout of an imported model: GEGLU, per-stage heads, CLIP's biases and
    quick-GELU compute the same function as the default layout."""
    from mobile_sdk.models.layers import set_attention_implementation

    pipe = convert_diffusers(sd_checkpoint, num_frames=2, plan={"*": "attn1d"})
    g = torch.Generator().manual_seed(8)
    args = (torch.randn(1, 4, 2, 8, 8, generator=g), torch.tensor([0.4]), torch.randn(1, 77, 32, generator=g))
    ids = pipe.tokenizer(["a red circle moving right"])
    with torch.no_grad():
        for p in pipe.unet.temporal.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        ref_v, ref_h = pipe.unet(*args), pipe.text_encoder(ids)
        ane_v = set_attention_implementation(pipe.unet, "ane")(*args)
        ane_h = set_attention_implementation(pipe.text_encoder, "ane")(ids)
    assert psnr(ref_v, ane_v) >= MIN_DB
    assert psnr(ref_h[0], ane_h[0]) >= MIN_DB and psnr(ref_h[1], ane_h[1]) >= MIN_DB


@pytest.mark.slow
def test_unet_without_middle_block_is_fully_delegated():
    """BK-SDM's layout joins the last down output with itself at the deepest up stage; that cat and the
    nearest-neighbour upsampling both stay inside XNNPACK."""
    from export.lowering.executorch import MethodSpec, lower_program

    cfg = unet_config(dict(tiny_unet(down_block_types=("CrossAttnDownBlock2D",) * 2, mid_block_type=None,
                                     up_block_types=("CrossAttnUpBlock2D",) * 2).config), Path("unet/config.json"))
    unet = VideoUNet(cfg, plan={"down1.*": "attn3d", "up0.*": "conv3d"}).eval()
    args = (torch.randn(1, 4, 2, 8, 8), torch.tensor([0.5]), torch.randn(1, 7, 32))
    report = lower_program({"main": MethodSpec(unet, args, ["sample", "t", "hidden"], ["v"])}, log=lambda _: None)
    delegation = report.delegation["main"]
    assert delegation["flop_fraction_delegated"] == 1.0
    assert set(delegation["ops_outside_by_type"]) <= {"_to_dim_order"}, delegation["ops_outside_by_type"]


# ---- training an imported model: its temporal layers (spatial frozen), then 4-step distillation ----

@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddpm_training_objective_matches_diffusers(prediction_type):
    """Noising, target and the implied clean latents on the checkpoint's DDPM schedule, as diffusers has them."""
    from mobile_sdk.config import SchedulerConfig
    from mobile_sdk.scheduler import make_scheduler

    ours = make_scheduler(SchedulerConfig(type="ddim", prediction_type=prediction_type, steps_offset=1))
    ref = diffusers.DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  prediction_type=prediction_type)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 4, 2, 8, 8, generator=g), torch.randn(5, 4, 2, 8, 8, generator=g)
    t = ours.sample_training_t(5, g)
    tau = (t * 1000).round().long()
    assert tau.min() >= 0 and tau.max() < 1000 and torch.equal(tau.float() / 1000, t)
    xt = ours.add_noise(x0, noise, t)
    assert psnr(ref.add_noise(x0, noise, tau), xt) >= 100
    target = ours.training_target(x0, noise, t)
    expected = noise if prediction_type == "epsilon" else ref.get_velocity(x0, noise, tau)
    assert psnr(expected, target) >= 100
    assert psnr(x0, ours.predict_x0(xt, target, t)) >= 60  # the exact target gives back the clean latents


def _small_training(steps: int):
    from export.train.distill import DistillConfig
    from export.train.teacher import TeacherTrainConfig

    return (TeacherTrainConfig(steps=steps, batch_size=2, pool_clips=8, checkpoint_every=steps, trainable="temporal"),
            DistillConfig(steps=steps, batch_size=2, pool_clips=8, checkpoint_every=steps))


def test_imported_model_trains_temporal_layers_only_then_distils_to_four_ddim_steps(sd_checkpoint, tmp_path):
    """SnapGen-V's recipe on an imported image model: the teacher stage changes only the temporal layers
    (spatial layers and text encoder keep the checkpoint's weights) on its own epsilon objective; the
    distilled model samples with 4-step DDIM and no guidance."""
    from export.train.run import run_training
    from export.train.vae import VAETrainConfig

    plan = {"down0.*": "conv3d", "up0.attn*": "attn1d", "mid.attn0": "attn3d"}
    model = tmp_path / "model"
    start = import_diffusers(sd_checkpoint, model, plan=plan, num_frames=2, log=lambda s: None)
    teacher_cfg, distill_cfg = _small_training(3)
    run = tmp_path / "run"
    reports = run_training(None, run, ["teacher", "distill"], VAETrainConfig(), teacher_cfg, distill_cfg,
                           progress=False, start_from=model)
    assert reports["teacher"]["objective"] == "ddim (epsilon)"
    temporal = sum(p.numel() for p in start.unet.temporal.parameters())
    assert reports["teacher"]["trained_parameters"] == temporal > 0

    teacher = VideoPipeline.from_pretrained(run / "teacher" / "model")
    before, after = start.unet.state_dict(), teacher.unet.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("temporal.") for k in changed), sorted(changed)[:5]
    for a, b in zip(start.text_encoder.state_dict().values(), teacher.text_encoder.state_dict().values()):
        assert torch.equal(a, b)
    assert teacher.config.scheduler == start.config.scheduler and teacher.config.guidance_scale == start.config.guidance_scale

    student = VideoPipeline.from_pretrained(run / "distill" / "model")
    s = student.config.scheduler
    assert (s.type, s.prediction_type, s.num_inference_steps, student.config.guidance_scale) == ("ddim", "epsilon", 4, 1.0)
    assert [round(t * 1000) for t in student.scheduler.timesteps] == [751, 501, 251, 1]  # leading, offset 1
    student.set_progress_bar_config(disable=True)
    frames = student("a red circle moving right", generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 2, student.config.height, student.config.width, 3)


def test_train_model_refuses_what_it_cannot_train(sd_checkpoint, tmp_path, capsys):
    from mobile_sdk.cli import main

    model = tmp_path / "model"
    import_diffusers(sd_checkpoint, model, num_frames=2, log=lambda s: None)  # no --plan: no temporal layers
    assert main(["train", "teacher", "--model", str(model), "--out", str(tmp_path / "run"), "--teacher-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "no temporal layers to train" in err and str(model) in err and "Traceback" not in err
    assert main(["train", "vae", "--model", str(model), "--out", str(tmp_path / "run")]) == 2
    assert "brings its own VAE" in capsys.readouterr().err
    assert main(["train", "all", "--model", str(model), "--preset", "tiny", "--out", str(tmp_path / "run")]) == 2
    assert "drop --preset/--plan" in capsys.readouterr().err


def _write_clips(folder: Path, count: int, frames: int = 12, size=(20, 28), fps: int = 24) -> Path:
    """Captioned MP4 clips of a moving bright square and their clip list."""
    from mobile_sdk.video_io import export_to_video

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        video = torch.zeros(frames, *size, 3, dtype=torch.uint8)
        for t in range(frames):
            video[t, 4:10, 2 + t + i:8 + t + i] = 255
        export_to_video(video.numpy(), folder / f"clip{i}.mp4", fps=fps)
        lines.append(json.dumps({"video": f"clip{i}.mp4", "caption": f"a white square moving right, take {i}"}))
    (folder / "clips.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "clips.jsonl"


def test_temporal_training_on_your_own_clips(sd_checkpoint, tmp_path):
    from export.train.teacher import train_teacher
    from export.train.video_clips import VideoClipStream

    model = tmp_path / "model"
    pipe = import_diffusers(sd_checkpoint, model, plan={"down0.*": "conv1d"}, num_frames=3, log=lambda s: None)
    clips = _write_clips(tmp_path / "data", 3)
    stream = VideoClipStream(clips, pipe.config.height, pipe.config.width, 3, 8, batch_size=2)
    x, captions = stream.batch(1)  # the third clip: 3 frames, every 3rd of 24 fps, scaled and cropped
    assert x.shape == (1, 3, 3, pipe.config.height, pipe.config.width) and captions == ["a white square moving right, take 2"]
    teacher_cfg, _ = _small_training(2)
    report = train_teacher(None, None, tmp_path / "teacher", dataclasses.replace(teacher_cfg, data=str(clips)),
                           progress=False, start_from=model)
    assert report["clips"] == 3 and report["data"] == str(clips)
    pools = list((tmp_path / "teacher").glob("latent_pool.*.json"))
    assert len(pools) == 1 and json.loads(pools[0].read_text())[0] == "a white square moving right, take 0"


def test_bad_clip_lists_are_refused_clearly(sd_checkpoint, tmp_path, capsys):
    from mobile_sdk.cli import main

    model = tmp_path / "model"
    import_diffusers(sd_checkpoint, model, plan={"down0.*": "conv1d"}, num_frames=8, log=lambda s: None)
    clips = _write_clips(tmp_path / "data", 1, frames=12)  # 12 frames at 24 fps give 4 at 8 fps, not 8
    bad = tmp_path / "bad.jsonl"
    cases = {
        "gives 4 frames at 8 fps": clips,
        f"{bad}:2: not JSON": '{"video": "data/clip0.mp4", "caption": "x"}\n{oops\n',
        f"{bad}:1: expected": '{"video": "data/clip0.mp4"}\n',
        "no such file": '{"video": "data/missing.mp4", "caption": "x"}\n',
        "no clips listed": "\n",
    }
    for message, content in cases.items():
        if isinstance(content, str):
            bad.write_text(content)
        path = content if isinstance(content, Path) else bad
        code = main(["train", "teacher", "--model", str(model), "--data", str(path), "--out", str(tmp_path / "run"),
                     "--teacher-steps", "1"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (message, err)


@pytest.mark.slow
def test_imported_model_trained_distilled_and_shipped_to_both_targets(sd_checkpoint, tmp_path):
    """The whole path a user takes, through the CLI as they run it: import with a plan, train the temporal
    layers on their clips, distil to 4 DDIM steps, export int8 ExecuTorch and 6-bit Core ML with the
    parity gate, generate from the package; every command prints only its own lines."""
    import subprocess
    import sys

    from mobile_sdk.package import open_package

    clips = _write_clips(tmp_path / "data", 4, frames=12)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"slots": {"down0.*": "conv3d", "up0.attn*": "attn1d", "mid.attn0": "attn3d"}}))
    model, run, pkg = tmp_path / "model", tmp_path / "run", tmp_path / "video.mobilepkg"
    commands = [
        ["import", "--diffusers", str(sd_checkpoint), "--out", str(model), "--plan", str(plan), "--frames", "2"],
        ["train", "all", "--model", str(model), "--data", str(clips), "--out", str(run), "--teacher-steps", "6",
         "--distill-steps", "3", "--batch-size", "2"],
        ["export", "--model", str(run / "distill" / "model"), "--target", "executorch", "--target", "coreml",
         "--quantize", "int8,palettize6", "--check", "--out", str(pkg)],
        ["generate", "--package", str(pkg), "--prompt", "a white square moving right", "--out", str(tmp_path / "v.mp4")],
    ]
    noise = ("Warning", "Running MIL", "Converting PyTorch", "torchao", "cpuinfo", "Traceback")
    for argv in commands:
        proc = subprocess.run([sys.executable, "-m", "mobile_sdk.cli", *argv], capture_output=True, text=True)
        assert proc.returncode == 0, (argv[0], proc.stderr[-3000:])
        lines = (proc.stdout + proc.stderr).replace("\r", "\n").splitlines()
        assert not [ln for ln in lines if any(n in ln for n in noise)], (argv[0], lines[:40])
    with open_package(pkg) as package:
        m = package.manifest
        assert m["scheduler"]["source"]["prediction_type"] == "epsilon" and len(m["steps"]) == 4
        assert m["targets"]["executorch"]["parity"]["passed"] and m["quantization"]["executorch"]["unet"] == "int8"
        assert set(m["targets"]["coreml"]["components"]) == {"text_encoder", "unet", "vae_decoder"}
    assert (tmp_path / "v.mp4").stat().st_size > 0
