"""The reference for bench_bert_parity.py: a plain Hugging Face PyTorch fine-tuning loop.

    python bench/hf_pytorch_finetune.py --checkpoint DIR --splits splits.json --epochs 2 --batch-size 32 \
        --learning-rate 2e-4 --max-length 128 --seed 42

What the Hugging Face examples do: ``BertForSequenceClassification``, AdamW with weight decay 0.01
except biases and LayerNorm weights, linear warmup over 10 % of the steps then linear decay, shuffled
batches padded to their longest text, evaluation on dev after every epoch; the epoch with the lowest
dev loss is the one scored on test (``load_best_model_at_end`` with ``metric_for_best_model="loss"``).
Prints one JSON object: dev-best test accuracy, per-epoch dev loss and the median step time.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--splits", required=True, help="JSON: {train,val,test: {text: [...], y: [...]}}")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast, get_linear_schedule_with_warmup

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    splits = json.loads(open(args.splits, encoding="utf-8").read())
    tokenizer = BertTokenizerFast.from_pretrained(args.checkpoint)
    model = BertForSequenceClassification.from_pretrained(args.checkpoint, num_labels=2, use_safetensors=True)

    def encode(part: str) -> tuple[list[list[int]], np.ndarray]:
        ids = tokenizer(splits[part]["text"], truncation=True, max_length=args.max_length)["input_ids"]
        return ids, np.asarray(splits[part]["y"])

    data = {part: encode(part) for part in ("train", "val", "test")}

    def batch(ids: list[list[int]], rows: np.ndarray) -> dict:
        width = max(len(ids[i]) for i in rows)
        x = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        for j, i in enumerate(rows):
            x[j, : len(ids[i])] = torch.tensor(ids[i])
        return {"input_ids": x, "attention_mask": (x != tokenizer.pad_token_id).long()}

    def evaluate(part: str) -> tuple[float, float]:
        ids, y = data[part]
        model.eval()
        losses, correct = [], 0
        with torch.no_grad():
            for start in range(0, len(ids), 256):
                rows = np.arange(start, min(start + 256, len(ids)))
                out = model(**batch(ids, rows), labels=torch.tensor(y[rows]))
                losses.append(float(out.loss) * len(rows))
                correct += int((out.logits.argmax(-1).numpy() == y[rows]).sum())
        model.train()
        return sum(losses) / len(ids), correct / len(ids)

    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
               "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
    ids, y = data["train"]
    steps_per_epoch = len(ids) // args.batch_size
    total = steps_per_epoch * args.epochs
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)
    model.train()
    step_times, dev_losses, best = [], [], (float("inf"), None)
    for _ in range(args.epochs):
        order = rng.permutation(len(ids))
        for k in range(steps_per_epoch):
            rows = order[k * args.batch_size:(k + 1) * args.batch_size]
            t0 = time.perf_counter()
            out = model(**batch(ids, rows), labels=torch.tensor(y[rows]))
            out.loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step_times.append(time.perf_counter() - t0)
        dev_loss, _ = evaluate("val")
        dev_losses.append(dev_loss)
        if dev_loss < best[0]:
            best = (dev_loss, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    _, test_accuracy = evaluate("test")
    print(json.dumps({"test_accuracy": test_accuracy, "dev_loss": dev_losses, "best_epoch": 1 + dev_losses.index(best[0]),
                      "step_seconds": float(np.median(step_times[10:] or step_times)), "steps": len(step_times),
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
