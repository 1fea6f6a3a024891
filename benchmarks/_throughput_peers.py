"""The peer trainers of benchmarks/train_throughput.py, one DDP rank each (run under torchrun), and the
equal-loss check between bayling-train's loss path and TRL's.

Both peers read the SAME token cache as bayling-train (``bayling.train.cache``): identical input ids and
assistant masks, so the three systems train on exactly the same tokens and targets.

- ``hf_worker``: the Alpaca-style baseline, ``transformers.Trainer`` with samples padded to the longest of a
  batch of ``--batch`` (no packing).
- ``trl_worker``: TRL's ``SFTTrainer`` with its best settings for this job: BFD packing into ``max_length``
  rows, padding-free batches (one flattened row, position ids reset per sample), completion-only loss from
  the cache's assistant mask (``completion_mask`` column), the same lr schedule, clipping and AdamW
  hyper-parameters as bayling-train's tiny CPU recipe.

Each rank writes OUT/rankR.json: real tokens and seconds after the warm-up steps, and the per-step loss
(this rank's share, so the ranks' values add up to the step's loss).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def cache_row(cache, i: int) -> dict:
    """TRL's pre-tokenised format: ``input_ids`` + ``completion_mask`` (1 where bayling-train has a target)."""
    ids, labels = cache.get(i)
    return {"input_ids": ids.tolist(), "completion_mask": (labels != -100).astype("int64").tolist()}


def cache_rows(cache) -> list[dict]:
    return [cache_row(cache, i) for i in range(len(cache))]


def trl_config(out: Path, steps: int, max_length: int, lr: float = 1e-3, **extra):
    """SFTConfig matching bayling-train's tiny CPU recipe (fp32, AdamW, cosine, 1 warm-up step, clip 1.0)."""
    from trl import SFTConfig

    kw = dict(output_dir=str(out / "trainer"), max_length=max_length, packing=True, packing_strategy="bfd",
              padding_free=True, completion_only_loss=True, per_device_train_batch_size=1,
              gradient_accumulation_steps=1, max_steps=steps, learning_rate=lr, lr_scheduler_type="cosine",
              warmup_steps=1, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
              max_grad_norm=1.0, bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
              ddp_backend="gloo", logging_steps=10**6, save_strategy="no", report_to=[], disable_tqdm=True,
              dataloader_num_workers=0, seed=42)
    kw.update(extra)
    return SFTConfig(**kw)


def make_trl_trainer(model, tokenizer, rows: list[dict], args):
    """An SFTTrainer that also records, per micro-step, the real tokens it saw and its share of the loss."""
    from datasets import Dataset
    from trl import SFTTrainer

    class CountingSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.seen_tokens.append(int(inputs["input_ids"].numel()))  # padding-free: every id is real
            world = self.accelerator.num_processes
            share = loss.detach() / world if num_items_in_batch is not None and self.args.average_tokens_across_devices \
                else loss.detach()
            self.loss_shares.append(float(share))
            return loss

    trainer = CountingSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=tokenizer)
    trainer.seen_tokens, trainer.loss_shares = [], []
    return trainer


def make_clock(warmup: int, counter: list):
    """A TrainerCallback whose ``marks`` hold (time, micro-steps counted) after the warm-up and at the end."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        marks: dict = {}

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup:
                self.marks["t0"], self.marks["n0"] = time.perf_counter(), len(counter)

        def on_train_end(self, args, state, control, **kw):
            self.marks["t1"], self.marks["n1"] = time.perf_counter(), len(counter)

    return Clock()


def write_rank(out: Path, tokens: list[int], marks: dict, losses: list[float]) -> None:
    rank = int(os.environ.get("RANK", "0"))
    (out / f"rank{rank}.json").write_text(json.dumps({
        "tokens": sum(tokens[marks["n0"] : marks["n1"]]), "seconds": marks["t1"] - marks["t0"], "losses": losses}))


def trl_worker(a) -> None:
    """One DDP rank of TRL's SFTTrainer (packing=bfd, padding-free, completion-only loss)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bayling.train.cache import open_cache

    cache = open_cache(a.cache)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    trainer = make_trl_trainer(model, AutoTokenizer.from_pretrained(a.model), cache_rows(cache),
                               trl_config(a.out, a.steps, a.max_length))
    clock = make_clock(a.warmup, trainer.seen_tokens)
    trainer.add_callback(clock)
    trainer.train()
    write_rank(a.out, trainer.seen_tokens, clock.marks, trainer.loss_shares)


def hf_worker(a) -> None:
    """One DDP rank of the Alpaca-style baseline: HF Trainer, pad to longest in the batch, no packing."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from bayling.train.cache import open_cache

    cache = open_cache(a.cache)
    counted: list[int] = []

    def collate(features):
        n = max(len(f[0]) for f in features)
        ids = torch.full((len(features), n), cache.pad_id, dtype=torch.long)
        lab = torch.full((len(features), n), -100, dtype=torch.long)
        att = torch.zeros((len(features), n), dtype=torch.long)
        for r, (i, lb) in enumerate(features):
            ids[r, : len(i)], lab[r, : len(i)], att[r, : len(i)] = torch.from_numpy(i), torch.from_numpy(lb), 1
        counted.append(int(att.sum()))
        return {"input_ids": ids, "labels": lab, "attention_mask": att}

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return len(cache)

        def __getitem__(self, i):
            return cache.get(i)

    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    targs = TrainingArguments(output_dir=str(a.out / "trainer"), per_device_train_batch_size=a.batch,
                              gradient_accumulation_steps=1, max_steps=a.steps, learning_rate=1e-3,
                              lr_scheduler_type="cosine", warmup_steps=1, logging_steps=10**6,
                              save_strategy="no", report_to=[], use_cpu=True, ddp_backend="gloo",
                              dataloader_num_workers=0, remove_unused_columns=False, seed=42,
                              disable_tqdm=True)
    clock = make_clock(a.warmup, counted)
    Trainer(model=model, args=targs, train_dataset=Data(), data_collator=collate, callbacks=[clock]).train()
    write_rank(a.out, counted, clock.marks, [])


def bayling_model(model_dir: Path):
    """The model as bayling-train loads it on CPU (fp32, its ``auto`` attention: sdpa_varlen), and that name."""
    import torch
    from transformers import AutoModelForCausalLM

    from bayling.train.attention import hf_attn_implementation

    attn = hf_attn_implementation("auto", cpu=True)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attn), attn


def equal_loss_check(model_dir: Path, cache, bins: list[list[int]], max_length: int, work: Path) -> list[dict]:
    """Same weights, same samples: bayling-train's loss path (``collate_packed`` + ``causal_lm_loss_sum``)
    against TRL's (its BFD packing + padding-free collator + ``compute_loss``), loss and gradient norm per row.

    One process; each ``bins`` entry (a packed row of bayling-train's plan) is given to a fresh SFTTrainer as
    its whole dataset, so TRL packs exactly those samples (into one row: they fit) and trains on its own batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bayling.train.packing import causal_lm_loss_sum, collate_packed

    out = []
    tok = AutoTokenizer.from_pretrained(model_dir)
    for b in bins:
        ours_model, attn = bayling_model(model_dir)
        batch = collate_packed(cache, [b], max_length, attn)
        ours = causal_lm_loss_sum(ours_model, batch) / batch.n_targets
        ours.backward()
        g_ours = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in ours_model.parameters() if p.grad is not None))

        trl_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
        rows = [cache_row(cache, i) for i in b]
        trainer = make_trl_trainer(trl_model, tok, rows, trl_config(work, 1, max_length, ddp_backend=None))
        inputs = next(iter(trainer.get_train_dataloader()))
        theirs = trainer.compute_loss(trainer.model, inputs)
        theirs.backward()
        g_trl = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in trl_model.parameters() if p.grad is not None))
        out.append({"samples": len(b), "tokens": batch.n_real_tokens, "trl_tokens": int(inputs["input_ids"].numel()),
                    "targets": batch.n_targets, "trl_targets": int((inputs["labels"] != -100).sum()),
                    "bayling_loss": float(ours.detach()), "trl_loss": float(theirs.detach()),
                    "bayling_grad_norm": float(g_ours), "trl_grad_norm": float(g_trl)})
    return out


def breakdown(model_dir: Path, cache, bins: list[list[int]], max_length: int, work: Path, repeats: int = 3) -> dict:
    """Where a step's compute goes, per packed row, one process, one thread (fastest of ``repeats``):
    forward+backward of each system's whole loss path, of the decoder body alone on each system's input
    (bayling-train: the unpadded row, per-sample SDPA without a mask; TRL: the unpadded row, SDPA with the
    [1, 1, T, T] mask transformers builds from its reset position ids), and an AdamW
    step (fused, as both use) over all parameters. Seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bayling.train.packing import causal_lm_loss_sum, collate_packed

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    ours_model, attn = bayling_model(model_dir)  # same weights, bayling-train's attention (no mask, no padding)
    trainer = make_trl_trainer(model, AutoTokenizer.from_pretrained(model_dir), [cache_row(cache, i) for b in bins
                                                                                 for i in b],
                               trl_config(work, 1, max_length, ddp_backend=None))
    loader = iter(trainer.get_train_dataloader())
    trl_rows = [next(loader) for _ in bins]
    ours_rows = [collate_packed(cache, [b], max_length, attn) for b in bins]

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            model.zero_grad(set_to_none=True)
            ours_model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            for k in range(len(bins)):
                fn(k)
            times.append((time.perf_counter() - t0) / len(bins))
        return min(times)

    def ours(k):
        b = ours_rows[k]
        (causal_lm_loss_sum(ours_model, b) / b.n_targets).backward()

    def theirs(k):
        trainer.compute_loss(trainer.model, dict(trl_rows[k])).backward()

    def body_ours(k):
        ours_model.model(**ours_rows[k].model_inputs(with_labels=False)).last_hidden_state.sum().backward()

    def body_trl(k):
        kw = {key: v for key, v in trl_rows[k].items() if key != "labels"}
        model.model(**kw).last_hidden_state.sum().backward()

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def adam(_k):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()

    return {"rows": len(bins), "bayling_tokens_per_row": sum(b.n_real_tokens for b in ours_rows) / len(bins),
            "trl_tokens_per_row": sum(int(r["input_ids"].numel()) for r in trl_rows) / len(bins),
            "bayling_loss_path_s": best(ours), "trl_loss_path_s": best(theirs),
            "bayling_body_s": best(body_ours), "trl_body_s": best(body_trl), "adamw_fused_step_s": best(adam)}
