"""The training loop: losses fall, resume is exact, checkpoints are atomic, distributed runs match one process."""
import json
import math
import shutil
import os
import signal
from contextlib import nullcontext
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from showo.data.world import WorldConfig
from showo.errors import ConfigError
from showo.model import Showo
from showo.training.checkpoint import latest_checkpoint
from showo.tokenizers.magvit import MagvitConfig
from showo.training.config import MixConfig, OptimConfig, TrainConfig
from showo.training.embedded import EmbeddedRecipe
from showo.training.tokenizer import TokenizerTrainConfig
from showo.training.batch import group_by_length
from showo.training.trainer import group_loss_sums
from train_helpers import SyntheticSource, tiny_model, tiny_trainer



def test_losses_fall(tmp_path):
    history = tiny_trainer(tmp_path, 40).train(progress=False)
    first, last = history[0], history[-1]
    assert {"loss_t2i", "loss_lm", "loss_mmu"} <= first.keys()
    assert last["loss"] < 0.6 * first["loss"], (first["loss"], last["loss"])
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") >= 4
    model = Showo.from_pretrained(latest_checkpoint(tmp_path) / "model")  # checkpoints are inference-ready
    assert model.config.num_vq_tokens == 4


@pytest.mark.parametrize("code_bit_rows", [False, True])
def test_resume_continues_exactly(tmp_path, code_bit_rows):
    straight = tiny_trainer(tmp_path / "a", 6, code_bit_rows=code_bit_rows)
    full = straight.train(progress=False)
    part = tiny_trainer(tmp_path / "b", 6, code_bit_rows=code_bit_rows)
    for _ in range(3):
        part.train_step()
    part.save()
    # different init: everything must come from the checkpoint
    resumed = tiny_trainer(tmp_path / "b", 6, seed=1, code_bit_rows=code_bit_rows)
    assert resumed.resume() and resumed.step == 3
    rest = resumed.train(progress=False)
    assert [m["loss"] for m in rest] == [m["loss"] for m in full[3:]]
    for (k, a), b in zip(straight.showo.state_dict().items(), resumed.showo.state_dict().values()):
        assert torch.equal(a, b), k


def _edit_scheduler(checkpoint: Path, **values) -> None:
    meta = json.loads((checkpoint / "trainer.json").read_text())
    meta["scheduler"].update(values)
    (checkpoint / "trainer.json").write_text(json.dumps(meta))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize("damage, match", [
    (lambda c: (c.parent / "latest").write_bytes(b"\xff\xfe"), "cannot read .*latest"),
    (lambda c: (c.parent / "latest").write_text("../../elsewhere\n"), "latest is corrupt: it should name a checkpoint"),
    (lambda c: (c / "trainer.json").write_text("{'step': 2"), "trainer.json is not valid JSON"),
    (lambda c: (c / "trainer.json").write_text('{"scheduler": {}}'), "trainer.json is corrupt: it needs an integer"),
    (lambda c: (c / "trainer.json").write_text('{"step": 2, "scheduler": {}, "config": []}'), "trainer.json is corrupt"),
    (lambda c: _truncate(c / "optimizer.pt"), "cannot read .*optimizer.pt"),
    (lambda c: torch.save({"state": 3}, c / "optimizer.pt"), "is corrupt: its optimizer, scheduler or random state"),
    (lambda c: torch.save({"torch": torch.zeros(3)}, c / "rng.pt"), "is corrupt: its optimizer, scheduler or random"),
    (lambda c: torch.save([1], c / "rng.pt"), "is corrupt: its optimizer, scheduler or random state"),
    # an edited scheduler trained at lr 150 (base_lrs), or failed mid-training (last_epoch)
    (lambda c: _edit_scheduler(c, base_lrs=[1000.0, 1000.0]), "is corrupt: its scheduler state does not fit"),
    (lambda c: _edit_scheduler(c, last_epoch="x"), "is corrupt: its scheduler state does not fit"),
])
def test_a_damaged_checkpoint_is_one_line_error(tmp_path, damage, match):
    """Each file a resume reads, damaged, is a CheckpointError naming it (the CLI's one line), not a traceback."""
    from showo.errors import CheckpointError

    t = tiny_trainer(tmp_path, 2)
    t.train(progress=False)
    damage(latest_checkpoint(tmp_path))
    with pytest.raises(CheckpointError, match=match) as e:
        tiny_trainer(tmp_path, 3).resume()
    assert "\n" not in str(e.value)


def test_a_damaged_metrics_log_resumes(tmp_path):
    tiny_trainer(tmp_path, 2, log_every=1).train(progress=False)
    with open(tmp_path / "metrics.jsonl", "ab") as log:
        log.write(b'\xff\xfe{"step": 1}\n[3]\n')
    resumed = tiny_trainer(tmp_path, 3, log_every=1)
    assert resumed.resume() and resumed.step == 2
    resumed.train(progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    t = tiny_trainer(tmp_path, 4, save_every=2)
    t.train_step(); t.train_step()
    t.save()
    t.train_step(); t.train_step()
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        raise KeyboardInterrupt("killed mid-checkpoint")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        t.save()
    monkeypatch.setattr(torch, "save", real_save)
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000002"
    assert list(tmp_path.glob(".tmp-checkpoint-*"))  # what the kill left
    resumed = tiny_trainer(tmp_path, 4)
    assert resumed.resume() and resumed.step == 2
    resumed.train(progress=False)
    assert not list(tmp_path.glob(".tmp-checkpoint-*"))  # removed by the next save


def test_pruning_keeps_the_newest_checkpoints_and_leaves_other_names(tmp_path, monkeypatch):
    """A copy named checkpoint-best sorted after the real ones, so the one just saved was deleted and `latest`
    named a missing checkpoint; a full disk while saving was a raw RuntimeError."""
    from showo.errors import OutputError

    t = tiny_trainer(tmp_path, 3, save_every=1, keep_checkpoints=1)
    t.train_step()
    t.save()
    shutil.copytree(tmp_path / "checkpoint-0000001", tmp_path / "checkpoint-best")
    t.train_step()
    t.save()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-0000002", "checkpoint-best"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000002"

    def full_disk(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 64")

    monkeypatch.setattr(torch, "save", full_disk)
    t.train_step()
    with pytest.raises(OutputError, match="cannot save checkpoint-0000003 .*a full disk"):
        t.save()
    assert not list(tmp_path.glob(".tmp-checkpoint-*")) and latest_checkpoint(tmp_path).name == "checkpoint-0000002"


def test_divergence_stops_before_the_step_is_applied_or_saved(tmp_path):
    from showo.errors import TrainingDiverged

    t = tiny_trainer(tmp_path, 4, save_every=1)
    t.train_step()
    t.save()
    with torch.no_grad():
        t.showo.showo.model.final_layernorm.weight[0] = float("nan")  # what a too-high learning rate ends in
    before = {k: v.clone() for k, v in t.showo.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="diverged at step 2"), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        t.train(progress=False)
    assert not [w for w in seen if "requires_grad" in str(w.message)]  # torch's note on float() of a graph tensor
    for k, v in t.showo.state_dict().items():
        assert torch.equal(v.nan_to_num(), before[k].nan_to_num()), k  # the step was not applied
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000001"


def test_resume_refuses_another_recipe_and_allows_reporting_changes(tmp_path):
    from showo.errors import CheckpointError, ConfigError
    from showo.training.trainer import Trainer
    from train_helpers import SyntheticSource

    t = tiny_trainer(tmp_path, 4)
    t.train_step()
    t.train_step()
    t.save()
    with pytest.raises(ConfigError, match=r"another recipe \(optim.lr 0.003 -> 0.01\)"):
        tiny_trainer(tmp_path, 4, lr=1e-2).resume()
    reseeded = tiny_trainer(tmp_path, 4)
    reseeded.cfg.seed = 7
    with pytest.raises(ConfigError, match="seed 0 -> 7"):
        reseeded.resume()
    with pytest.raises(ConfigError, match="already at step 2, past max_steps 1"):
        tiny_trainer(tmp_path, 1).resume()
    weighted = tiny_trainer(tmp_path, 4)
    weighted.cfg.mix.mmu_qtype_weights = {"relation": 3.0}  # a key the saved mapping lacks is a change too
    with pytest.raises(ConfigError, match=r"mix.mmu_qtype_weights \{\} -> \{'relation': 3.0\}"):
        weighted.resume()
    with pytest.raises(ConfigError, match="already holds a run .latest: checkpoint-0000002.: call resume"):
        tiny_trainer(tmp_path, 4).train(progress=False)  # its saves would sort before the old run's and go
    longer = tiny_trainer(tmp_path, 6, log_every=3, save_every=3)  # a later end and other reporting: allowed
    assert longer.resume() and longer.step == 2
    from showo.tiny import tiny_random_pipeline

    wider = tiny_random_pipeline(hidden=64, layers=2, heads=2, max_seq_length=8, grid=2)
    other = Trainer(wider.model, SyntheticSource(wider.tokenizer.vocab, 8, 4, t.cfg.mix), t.cfg)
    with pytest.raises(CheckpointError, match="another model architecture"):
        other.resume()



def test_gradient_checkpointing_and_bf16(tmp_path):
    plain = tiny_trainer(tmp_path / "p", 2).train_step()
    ckpt = tiny_trainer(tmp_path / "c", 2, gradient_checkpointing=True).train_step()
    assert ckpt["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    assert ckpt["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-4)
    bf16 = tiny_trainer(tmp_path / "b", 2, precision="bf16").train_step()
    assert bf16["loss"] == pytest.approx(plain["loss"], rel=0.05)


def _kill_processes_naming(text: str) -> None:
    """SIGKILL every process whose command line contains `text` (Linux /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _torchrun_worker(out: Path, mode: str, steps: int) -> None:
    """tests/dist_train_worker.py under torchrun, two processes on the CPU (gloo)."""
    here = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(here / "dist_train_worker.py"), str(out), mode, str(steps)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # a hung collective: its workers ignore SIGTERM and would outlive the test
        os.killpg(proc.pid, signal.SIGKILL)
        _kill_processes_naming(str(out))  # torchrun starts each worker in a session of its own
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    # each process destroyed the group it joined before the interpreter's teardown (else gloo can abort it there)
    assert [json.loads((out / f"rank{r}-exit.json").read_text()) for r in (0, 1)] == [{"group_alive": False}] * 2


@pytest.mark.parametrize("mode", ["ddp", "fsdp", "ddp+code_bit_rows"])
def test_two_processes_match_one(tmp_path, mode):
    steps = 3
    option = mode.partition("+")[2]
    single = tiny_trainer(tmp_path / "single", steps, **({option: True} if option else {})).train(progress=False)
    _torchrun_worker(tmp_path / "dist", mode, steps)
    result = json.loads((tmp_path / "dist" / "history.json").read_text())
    assert result["world_size"] == 2 and len(single) == len(result["history"]) == steps
    for a, b in zip(single, result["history"]):
        for k in ("loss_t2i", "loss_lm", "loss_mmu", "loss"):
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), (k, a[k], b[k])


def test_target_positions_only_gives_the_full_logits_losses_and_gradients():
    model, vocab = tiny_model()
    source = SyntheticSource(vocab, 8, 4, MixConfig(t2i=3, lm=1, mmu=2))
    group = group_by_length(source.parts(0, 0, 1))[0]
    assert len(group) == 3  # t2i, lm and mmu rows share one forward pass

    sums = group_loss_sums(model, group)
    fast = dict(zip([p.name for p in group], sums))
    torch.stack(sums).sum().backward()
    fast_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()

    logits = model(torch.cat([p.ids for p in group]), attention_mask=torch.cat([p.mask for p in group]))
    full, row = {}, 0
    for p in group:
        lg = logits[row:row + p.ids.shape[0]].reshape(-1, logits.shape[-1])
        row += p.ids.shape[0]
        full[p.name] = sum(F.cross_entropy(lg, t.reshape(-1), ignore_index=-100, reduction="sum")
                           for t in (p.here, p.next) if t is not None)
    torch.stack(list(full.values())).sum().backward()
    for k in full:
        assert torch.allclose(fast[k], full[k], rtol=1e-5), k
    for k, p in model.named_parameters():
        assert torch.allclose(fast_grads[k], p.grad, rtol=1e-4, atol=1e-6), k


def test_dropped_positions_inside_a_row_keep_their_neighbours_positions():
    """A position nothing reads in the middle of a row (here: a causal text row whose position 5 no later
    token may attend, without a target) is dropped; the tokens after it keep their RoPE positions, so the loss
    is that of the full row."""
    from showo.training.batch import Part

    model, vocab = tiny_model()
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(12, 12).tril().bool().repeat(2, 1, 1, 1)
    mask[:, :, 6:, 5] = False
    nxt = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], dim=1)
    nxt[:, 4:6] = -100  # nothing predicts or is predicted at the gap
    part = Part("lm", ids, mask, next=nxt)
    logits = model(ids, attention_mask=mask).flatten(0, 1)
    full = F.cross_entropy(logits, nxt.flatten(), ignore_index=-100, reduction="sum")
    assert torch.allclose(group_loss_sums(model, [part])[0], full, rtol=1e-5)
    no_targets = Part("lm", ids, mask, next=torch.full_like(nxt, -100))  # nothing to keep: still a valid step
    assert group_loss_sums(model, [no_targets])[0].item() == 0.0


def test_lm_head_rows_are_rounded_up_with_unselected_positions():
    from showo.training.batch import round_up_selection

    select = torch.zeros(3, 50, dtype=torch.bool)
    select[0, 5:30] = select[2, :7] = True
    rounded = round_up_selection(select, 16)
    assert int(rounded.sum()) == 32 and bool((rounded | ~select).all())  # a superset, 32 rows
    assert torch.equal(round_up_selection(rounded, 16), rounded)  # already a multiple
    assert bool(round_up_selection(select, 1000).all())  # capped at every position


def test_cpu_training_attention_kernel_matches_the_fused_one(monkeypatch):
    """Differentiated low-precision attention runs the unfused math kernel on CPU (faster backward): checked
    here in float32 (exact comparisons) by letting float32 take that path too: same logits as the inference
    forward, same gradients as the fused flash kernel, for omni-attention masks and causal rows."""
    import showo.backbone.phi as phi
    from torch.nn.attention import SDPBackend, sdpa_kernel

    monkeypatch.setattr(phi, "MATH_KERNEL_TRAINING_DTYPES", (torch.float32,))
    model, vocab = tiny_model()
    source = SyntheticSource(vocab, 8, 4, MixConfig(t2i=2, lm=1, mmu=1))
    group = group_by_length(source.parts(0, 0, 1))[0]
    ids, mask = torch.cat([p.ids for p in group]), torch.cat([p.mask for p in group])

    def logits_and_grads(attention_mask):
        model.zero_grad()
        logits = model(ids, attention_mask=attention_mask)
        logits.square().mean().backward()
        return logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}

    for attention_mask in (mask, None):  # explicit omni-attention masks; None = causal
        with torch.no_grad():
            inference = model(ids, attention_mask=attention_mask)
        ours = logits_and_grads(attention_mask)
        with monkeypatch.context() as m:  # force the fused kernel where PhiAttention picks the math one
            m.setattr(phi, "sdpa_kernel", lambda _backend: sdpa_kernel(SDPBackend.FLASH_ATTENTION))
            fused = logits_and_grads(attention_mask)
        for logits in (ours[0], fused[0]):
            assert torch.allclose(logits, inference, atol=1e-5)
        for k in ours[1]:
            assert torch.allclose(ours[1][k], fused[1][k], rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize("dtype,math", [(torch.bfloat16, True), (torch.float32, False)])
def test_cpu_training_picks_the_math_attention_kernel_in_bf16_only(monkeypatch, dtype, math):
    """bf16 training attention takes the math kernel (faster backward); float32 keeps the fused one (same
    speed, and the math kernel would keep every layer's attention probabilities)."""
    import showo.backbone.phi as phi

    picked = []
    monkeypatch.setattr(phi, "sdpa_kernel", lambda backend: picked.append(backend) or nullcontext())
    model, vocab = tiny_model()
    ids = torch.randint(0, 50, (1, 6))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        model(ids).sum().backward()
    assert bool(picked) == math
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        picked.clear()
        model(ids)
    assert not picked  # inference never does


def test_checkpoints_get_the_permissions_of_plain_files(tmp_path):
    """tempfile makes private (0700 / 0600) directories and files; a run's results follow the umask instead."""
    mask = os.umask(0o022)
    try:
        t = tiny_trainer(tmp_path, 1)
        t.train(progress=False)
    finally:
        os.umask(mask)
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "latest").stat().st_mode & 0o777 == 0o644
    files = [p for p in checkpoint.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)  # safetensors itself writes 0600 files
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in files), [(p.name, oct(p.stat().st_mode)) for p in files]


def test_saved_tokenizers_get_the_permissions_of_plain_files(tmp_path):
    from showo.tiny import tiny_random_pipeline

    mask = os.umask(0o022)
    try:
        tiny_random_pipeline().vq.save_pretrained(tmp_path / "magvit")
    finally:
        os.umask(mask)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in (tmp_path / "magvit").iterdir())


@pytest.mark.parametrize("sig, stops_with", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)])
def test_a_stop_signal_finishes_the_step_saves_it_and_stops(tmp_path, monkeypatch, sig, stops_with):
    """Ctrl-C or a scheduler's SIGTERM mid-run: the step in flight completes and is saved (no checkpoint was due
    before the end), then the run stops as the signal's previous handler says; a resume starts after that step."""
    def leave(signum, frame):
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, leave)  # what the CLI does (an exception that unwinds)
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's, even where launched with it ignored
    try:
        t = tiny_trainer(tmp_path, 6, log_every=1)
        t.on_log = lambda m: os.kill(os.getpid(), sig) if m["step"] == 2 else None
        with pytest.raises(stops_with):
            t.train(progress=False)
        assert signal.getsignal(signal.SIGTERM) is leave  # the handlers are back
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, interrupt)
    assert t.step == 2 and latest_checkpoint(tmp_path).name == "checkpoint-0000002"
    resumed = tiny_trainer(tmp_path, 6, log_every=1)
    assert resumed.resume() and resumed.step == 2


def test_a_signal_to_one_process_stops_both_at_the_same_saved_step(tmp_path):
    """Under torchrun a scheduler's SIGTERM reaches the processes one by one: here only rank 1 gets it after
    step 2. Both stop after step 2 (agreed by an all-reduce), the step is saved, and only rank 1 exits as its
    signal says; rank 0 returns normally."""
    _torchrun_worker(tmp_path, "stop", 6)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"step": 2, "exit": None}, {"step": 2, "exit": 143}]
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000002"


def test_an_ignored_signal_does_not_stop_the_run(tmp_path):
    """A run started with SIGINT ignored (`cmd &` in a script) used to take it as a stop request: it saved, broke
    off, and returned as if finished."""
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        t = tiny_trainer(tmp_path, 4, log_every=1)
        t.on_log = lambda m: os.kill(os.getpid(), signal.SIGINT) if m["step"] == 2 else None
        assert len(t.train(progress=False)) == 4 and t.step == 4
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, interrupt)


def test_a_stop_signal_saves_the_tokenizer_step(tmp_path):
    from test_tokenizer_training import _trainer

    t = _trainer(tmp_path, 6)
    t.cfg.log_every = 1
    t.on_log = lambda m: os.kill(os.getpid(), signal.SIGINT) if m["step"] == 3 else None
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whoever started pytest
    try:
        with pytest.raises(KeyboardInterrupt):
            t.train(progress=False)
    finally:
        signal.signal(signal.SIGINT, interrupt)
    assert latest_checkpoint(tmp_path).name == "checkpoint-0000003"


def test_row_generator_keeps_its_streams_and_takes_any_seed():
    """Seeds of every shipped recipe keep their scenes; a seed that made the key overflow int64 (from about
    1.85 million) crashed at the first step."""
    from showo.training.batch import row_generator

    assert row_generator(9, 100, "mmu", 4).initial_seed() == ((9 * 1_000_003 + 100) * 10 + 3) * 1_000_033 + 4
    big = [row_generator(20240101, step, "t2i", 0).initial_seed() for step in (0, 1)]
    assert big[0] != big[1] and all(0 <= s < 2 ** 63 for s in big)


@pytest.mark.parametrize("build, match", [
    (lambda: TrainConfig(max_steps=2.5), "max_steps must be an integer, got 2.5$"),  # trained 3 steps
    (lambda: TrainConfig(max_steps="10"), "max_steps must be an integer, got '10'$"),
    (lambda: TrainConfig(mix=MixConfig(t2i=2.5)), "mix.t2i must be an integer"),
    (lambda: TrainConfig(optim=OptimConfig(betas=(0.9, 0.9, 0.9))), "optim.betas must be a list of 2"),
    (lambda: TrainConfig(optim=OptimConfig(lr=math.inf)), "optim.lr must be a finite number"),
    (lambda: TrainConfig(optim=OptimConfig(lr=1e30)), r"optim.lr must be in \(0, 1\], got 1e\+30"),  # diverged
    (lambda: TokenizerTrainConfig(lr=2.0), r"tokenizer_train.lr must be in \(0, 1\], got 2.0"),
    (lambda: TrainConfig(mix=MixConfig(t2i=10 ** 9)), r"mix: row counts must be in \[0, 65536\]"),  # grew on
    (lambda: TrainConfig(optim=OptimConfig(grad_clip=math.inf)), "optim.grad_clip must be a finite number or null"),
    (lambda: TrainConfig(mix=MixConfig(mmu_qtype_weights={"colour": True})),
     "mix.mmu_qtype_weights must be a mapping of strings to finite numbers"),
    (lambda: TokenizerTrainConfig(max_steps="5"), "tokenizer_train.max_steps must be an integer"),
    (lambda: EmbeddedRecipe(hidden_size="256"), "recipe: hidden_size must be an integer"),
    (lambda: EmbeddedRecipe(text_vocab_size=10 ** 12), "text_vocab_size must be at most 1000000"),  # an abort
    (lambda: WorldConfig(image_size=64.5), "world config: image_size must be an integer"),
    (lambda: MagvitConfig(z_channels=6.0), "MAGVIT config: z_channels must be an integer"),
])
def test_configs_built_in_python_are_checked_like_files(build, match):
    """from_dict checked types; a config made in Python failed later in training (or trained max_steps=2.5)."""
    with pytest.raises(ConfigError, match=match):
        build()


def test_a_warmup_as_long_as_the_run_is_warned_about(tmp_path):
    """With warmup_steps >= max_steps the learning rate never reaches its peak (a 5-step fine-tune under the old
    fixed 20-step warmup stayed below a fifth of it), which nothing said."""
    from showo.errors import ShowoWarning

    with pytest.warns(ShowoWarning, match=r"warmup_steps 1 >= max_steps 1: the learning rate never reaches optim.lr "
                                          r"0.003 \(at most 0\)"):
        tiny_trainer(tmp_path / "a", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_trainer(tmp_path / "b", 2)


def test_learning_rate_schedule_warms_up_then_follows_the_cosine():
    from showo.training.optim import build_optimizer, lr_factor

    assert [lr_factor(s, 4, 12) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert lr_factor(8, 4, 12) == pytest.approx(0.5) and lr_factor(12, 4, 12) == pytest.approx(0.0)
    assert lr_factor(8, 4, 12, min_ratio=0.1) == pytest.approx(0.55) and lr_factor(99, 4, 12, 0.1) == pytest.approx(0.1)
    model = torch.nn.Linear(2, 2)
    opt, sched = build_optimizer(model, OptimConfig(lr=0.2, warmup_steps=2, min_lr_ratio=0.0), total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.1, 0.2, 0.2 * 0.5 * (1 + math.cos(math.pi / 4)), 0.1,
                                 0.2 * 0.5 * (1 + math.cos(3 * math.pi / 4))])


def test_loss_coefficients_scale_the_gradient_and_clipping_bounds_it(tmp_path):
    """Each objective's coefficient weighs its loss in the gradient (dropping them survived every test), and
    optim.grad_clip bounds the norm the optimizer steps with."""
    def first_step(name: str, coeff: float, clip: float | None = None) -> tuple[dict, list[float]]:
        t = tiny_trainer(tmp_path / name, 3)
        t.coeff = {k: coeff if k == name else 0.0 for k in t.coeff}  # (as built from mix.<name>_coeff)
        t.cfg.optim.grad_clip = clip
        seen, step = [], t.optimizer.step
        t.optimizer.step = lambda *a, **k: seen.append(float(torch.linalg.vector_norm(torch.stack(
            [p.grad.norm() for p in t.model.parameters() if p.grad is not None])))) or step(*a, **k)
        return t.train_step(), seen

    for name in ("t2i", "lm", "mmu"):
        one, two = first_step(name, 1.0)[0], first_step(name, 2.0)[0]
        assert one["grad_norm"] > 0 and two["grad_norm"] == pytest.approx(2 * one["grad_norm"], rel=1e-4), name
        assert first_step(name, 0.0)[0]["grad_norm"] == 0.0
    metrics, seen = first_step("lm", 1.0, clip=1e-3)
    assert metrics["grad_norm"] > 1e-2 and seen == [pytest.approx(1e-3, rel=1e-3)]  # reported unclipped, stepped clipped


def test_weight_decay_groups():
    """Default (nanoGPT): only the matrices of linear layers decay; official: everything but biases."""
    from showo.training.optim import param_groups

    model, _ = tiny_model()
    names = {id(p): n for n, p in model.named_parameters()}
    for official in (False, True):
        decay, no_decay = param_groups(model, OptimConfig(weight_decay=0.1, official_decay_groups=official))
        assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
        decayed = {names[id(p)] for p in decay["params"]}
        kept = {names[id(p)] for p in no_decay["params"]}
        assert decayed | kept == set(names.values()) and not decayed & kept
        assert all("bias" in n for n in kept) if official else all(
            "embed_tokens" in n or model.get_parameter(n).dim() < 2 for n in kept)
        assert any("embed_tokens" in n for n in (decayed if official else kept))
        assert any(n.endswith("q_proj.weight") for n in decayed) and not any("bias" in n for n in decayed)
