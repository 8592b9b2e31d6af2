#!/usr/bin/env python
"""Writes benchmarks/queries/queries.jsonl: the project's own retrieval queries, split into halves.

Written for issue 17 in seven styles (plain, logline, numbers, jargon, terse, indirect, nonnative),
in our own words, none taken from ../shared/eval. `expected` holds every entry id that answers the
query. The half is fixed by a hash of the query text (md5, even -> tune, odd -> heldout), so adding
a query never moves another one between halves. Tune only on `tune`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

IDS = {}
for line in (HERE / "entry_ids.txt").read_text().split():
    src, rest = line.split("/", 1)
    if src == "catalog":
        IDS["c" + str(int(rest[:3]))] = line
    elif src == "guide":
        IDS["g" + str(int(rest[:3]))] = line
    elif src == "audit":
        IDS["a" + str(int(rest[:3]))] = line
    elif rest.startswith("problem-"):
        IDS["rp" + rest.split("-")[1]] = line
    else:  # run/fix-1-2-...
        IDS["rf" + rest.split("-")[1] + rest.split("-")[2]] = line

Q = [
    # ---- catalog ----
    ("numbers", "effective rank of the embeddings is 12 out of 2048 dims", "c1 c7"),
    ("jargon", "RankMe keeps dropping during VICReg pretraining", "c1"),
    ("plain", "when I plot the first conv layer filters they look like random noise and many are blank", "c2"),
    ("nonnative", "conv kernels visualize is noise, lot of them almost zero value", "c2"),
    ("plain", "all my embeddings end up almost the same vector after a few epochs of SimSiam", "c3 c35 c71"),
    ("numbers", "per-dim std of normalized z is 0.0008 with D=2048", "c3 c12 c35"),
    ("terse", "overfits after 3 epochs", "c4 g12 c61"),
    ("indirect", "the best checkpoint is always from very early on, everything after it is worse on held-out data", "c4 g12"),
    ("plain", "a handful of features have huge norms compared to the rest", "c5 c99"),
    ("jargon", "off-diagonal terms of the cross-correlation matrix stay large in Barlow Twins", "c6"),
    ("numbers", "off-diag covariance energy 0.85, features mostly redundant", "c6"),
    ("numbers", "top 5 principal components explain 95% of the variance of the features", "c7 c1"),
    ("terse", "eigenvalue spectrum drops off fast", "c7"),
    ("plain", "the errors always happen on the same few classes and image regions", "c8"),
    ("indirect", "my t-SNE plot is one big blob, no groups at all", "c9 c39"),
    ("nonnative", "umap of features show all point mixed together, no separate", "c9 c39"),
    ("logline", "step 1200 | grad_norm: 3.4e+04 | loss: 8.91", "c10 g8 a2"),
    ("terse", "gradients exploding or vanishing", "c10 g7 g8"),
    ("plain", "the loss stops going down already in the second epoch and stays flat", "c11 g2"),
    ("logline", "epoch 2 loss 4.1021 | epoch 3 loss 4.1019 | epoch 4 loss 4.1020", "c11 g2"),
    ("numbers", "output std across the batch is 1e-5, every sample gives the same output", "c12 c66"),
    ("jargon", "linear eval after DINO pretraining is poor on my downstream dataset", "c13 c86"),
    ("plain", "the self-supervised features do badly when I fine-tune on the labeled task", "c13 c86"),
    ("terse", "epochs take forever", "c14 g13"),
    ("numbers", "one epoch takes 3 hours on 50k images", "c14 g13"),
    ("jargon", "adding BatchNorm to the projector made training unstable", "c15"),
    ("nonnative", "when I put layernorm the performance become worse and unstable", "c15"),
    ("plain", "the two augmented views produce exactly the same output, similarity is 1 from the start", "c16 c100"),
    ("terse", "checkpoints too big", "c17"),
    ("numbers", "each .pt checkpoint is 4.2 GB and the disk fills up in a day", "c17"),
    ("plain", "some embedding dimensions are always near zero while a few dominate", "c18 c99 c5"),
    ("jargon", "BYOL momentum encoder with tau 0.996 doesn't make anything more stable", "c19"),
    ("logline", "ema_tau=0.999 target_loss flat, no better than the run without EMA", "c19"),
    ("indirect", "I log PCA plots and the similarity heatmap every epoch and they look exactly the same from epoch 1 to 50", "c20"),
    ("numbers", "92% of activations after the ReLU layers are exactly zero", "c21 c99"),
    ("jargon", "dead ReLUs in the middle blocks", "c21 g6"),
    ("plain", "a tiny bit of gaussian noise on the input changes the embedding completely", "c22 c40 c98"),
    ("numbers", "same config, different seeds, and accuracy ranges from 40% to 70%", "c23 c50"),
    ("nonnative", "every time i run again with other seed result is very different", "c23"),
    ("plain", "the segmentation output is all background class", "c24 a3"),
    ("numbers", "confusion matrix: 97% of predictions go to class 0", "c24 a3"),
    ("indirect", "the numbers on the benchmark look great but when I look at the reconstructions they are blurry garbage", "c25"),
    ("plain", "the features at every time step and position look the same, nothing changes across the sequence", "c26"),
    ("jargon", "embeddings cluster by background texture rather than object, a confounder", "c27 c55"),
    ("numbers", "85% of the tanh outputs sit beyond 0.99 in absolute value", "c28 c93"),
    ("terse", "sigmoid outputs saturated", "c28 c93"),
    ("plain", "the embedding space jumps around completely from one epoch to the next", "c29"),
    ("indirect", "my wandb dashboard has 300 panels and I can't tell what's going on", "c30"),
    ("logline", "emb_norm/mean: 4.8 -> 35.2 -> 410.6 over 30 epochs", "c31 c97"),
    ("nonnative", "norm of features keep going up every epoch, is it ok?", "c31"),
    ("plain", "features trained on one domain generalize poorly when I move to a new domain", "c32 c60"),
    ("terse", "very spiky loss within each epoch", "c33 c44"),
    ("numbers", "batch loss jumps between 0.4 and 3.5 from one batch to the next", "c33 g3"),
    ("plain", "my autoencoder just copies the input through, reconstruction is perfect but the latent is useless", "c34"),
    ("jargon", "MAE with mask ratio 0.1 reconstructs perfectly but the encoder features are useless", "c34"),
    ("numbers", "mean pairwise cosine similarity between embeddings = 0.999", "c35 c3"),
    ("logline", "train/pairwise_cos 0.9987 train/z_std 0.0012", "c35 c3 c12"),
    ("plain", "after switching to heavy color jitter and blur, the loss went up and the linear probe dropped", "c36 c58"),
    ("indirect", "the model can't forecast what happens in the next frames from its embeddings", "c37"),
    ("jargon", "ViT attention rollout looks flat, no focus on the object", "c38 c77 g16"),
    ("plain", "even with labels the embedding space shows no clusters per class", "c39 c9"),
    ("nonnative", "small change of input give very big jump in embedding, space not smooth", "c40 c22 c98"),
    ("plain", "validation accuracy is always a bit behind training and never catches up", "c41 g12"),
    ("terse", "inference too slow", "c42"),
    ("numbers", "forward pass at test time takes 800 ms per image, training speed was fine", "c42"),
    ("logline", "epoch 1-6 loss goes down 5.2 to 2.1, epoch 7 loss 9.8, epoch 8 loss nan", "c43 g1"),
    ("plain", "training was fine for the first few epochs and then suddenly blew up", "c43"),
    ("terse", "sharp spikes in loss curve", "c44 c33"),
    ("indirect", "when I project to 2D the points lie along a straight line instead of forming groups", "c45"),
    ("plain", "several learned conv filters are near-copies of each other", "c46"),
    ("plain", "shuffling the token order doesn't change the transformer's output at all", "c47 c76"),
    ("numbers", "mean embedding norm is 3 on some batches and 60 on others", "c48"),
    ("jargon", "in the siamese setup only the online branch collapses, the target branch is fine", "c49"),
    ("indirect", "changing the learning rate from 3e-4 to 4e-4 completely breaks the run", "c50"),
    ("plain", "my beta-VAE latents are nicely disentangled but useless for the downstream classifier", "c51"),
    ("numbers", "epoch time went from 40 s at the start to 95 s by epoch 30", "c52"),
    ("nonnative", "each epoch become more slow than previous one", "c52"),
    ("jargon", "the projection head's last Linear has a weight norm 10x everything else", "c53"),
    ("plain", "linear probing accuracy is great but fine-tuning an MLP or detection head on top fails", "c54"),
    ("indirect", "the classifier turns out to rely on the image border and a watermark instead of the actual object", "c55"),
    ("jargon", "each latent unit mixes pitch and timbre, nothing is disentangled", "c56"),
    ("plain", "probes on the intermediate layers look great but the model's final predictions are weak", "c57"),
    ("plain", "my model became invariant to rotation even though orientation matters for the task", "c58 c36"),
    ("logline", "train_loss 0.82 -> 0.31, val/nmi 0.412 -> 0.409", "c59"),
    ("nonnative", "loss go down nice but accuracy on eval dont improve anything", "c59"),
    ("terse", "fails under distribution shift", "c60 c32"),
    ("numbers", "train accuracy 100% after epoch 2 while val accuracy stuck at 35%", "c61 c4 g12"),
    ("plain", "the minority classes are almost never predicted correctly", "c62 a3"),
    ("jargon", "softmax max prob is 0.99 even on wrong predictions, terrible calibration ECE", "c63"),
    ("indirect", "from the embedding alone a linear classifier recovers which augmentation the image got", "c64"),
    ("plain", "making the projection head deeper makes the linear eval worse", "c65"),
    ("numbers", "std of layer3 activations across the batch is 0.0, every sample gives the same hidden state", "c66 c12"),
    ("numbers", "conv weight norms shrink to 1e-3 and the model underfits", "c67"),
    ("plain", "features from completely different batches are almost perfectly aligned", "c68"),
    ("indirect", "the loss is tiny but the predictions make no sense when I look at them", "c69 c25"),
    ("plain", "contrastive pretraining works on spectrograms but not on raw audio waveforms", "c70"),
    ("jargon", "siamese net with the identical encoder and projector in both branches and no predictor collapses", "c71 c3"),
    ("plain", "the encoder features are fine but the projector output is just noise", "c72"),
    ("indirect", "the model does fine on image-level classification but can't localize anything or see fine textures", "c73"),
    ("logline", "loss: 1.21 (ep5) 1.34 (ep10) 1.52 (ep15) 1.70 (ep20), batch_size=4096", "c74"),
    ("plain", "the training loss slowly creeps up instead of going down since I increased the batch size", "c74"),
    ("numbers", "every embedding in the batch has L2 norm 1.0000 before normalization, std of norms 1e-6", "c75"),
    ("plain", "reversing the frames of the clip gives the same embedding", "c76 c47"),
    ("terse", "attention maps look random", "c77 c38"),
    ("plain", "removing the positional embeddings makes accuracy crash from 80 to 20", "c78"),
    ("plain", "late in training the loss keeps bouncing up and down", "c79 g3"),
    ("numbers", "update/weight ratio of the stem conv is 1e-7 while later layers are 1e-3", "c80 g7"),
    ("indirect", "after the sigmoid every feature is either 0 or 1, like a hard assignment", "c81 c93"),
    ("jargon", "positive pair cosine is only 0.2 in SimCLR, views of the same image don't agree", "c82"),
    ("numbers", "cosine between batch mean features is around 0 across batches", "c83"),
    ("plain", "adding new training data doesn't change the loss or the features at all", "c84"),
    ("logline", "nt_xent_loss: 0.0003 at step 500", "c85"),
    ("terse", "InfoNCE loss is zero", "c85"),
    ("plain", "fine-tuning from my pretrained weights is worse than training from scratch", "c86 c13"),
    ("jargon", "running_mean and running_var of BatchNorm jump wildly between epochs", "c87 c15"),
    ("plain", "one class collapses to a single point in PCA while the others are spread out", "c88"),
    ("indirect", "loss drops to almost zero within the first few hundred steps but the probe accuracy doesn't improve", "c89 c85"),
    ("jargon", "optimizer.step() runs and grads are nonzero but the weights stay unchanged, param not in the optimizer?", "c90"),
    ("plain", "the same channels light up for every class", "c91"),
    ("logline", "GradScaler scale 65536 -> 32768 -> 16384 -> 8192, loss inf", "c92"),
    ("jargon", "switched to fp16 autocast and the loss became nan", "c92 g1"),
    ("nonnative", "after i enable amp training the loss explode", "c92"),
    ("terse", "outputs stuck at 0 or 1", "c93 c81 c28"),
    ("numbers", "grad norm of the last layer 5.0, of the first layer 0.001", "c94 g7"),
    ("plain", "the SSL features focus on texture details and don't generalize to shapes", "c95"),
    ("plain", "most of the weight norm sits in the first one or two conv layers", "c96"),
    ("logline", "weight_norm 120 -> 850 -> 3100, val metrics still fine, wd=0", "c97"),
    ("nonnative", "two almost same images give totally different prediction", "c98 c22 c40"),
    ("terse", "some channels always dead, others always high", "c99 c21"),
    ("plain", "my augmentations are too weak, both views look almost identical and the loss gives little signal", "c100 c16"),
    # ---- guide ----
    ("logline", "Epoch 3:  42%|████      | 1310/3125 [02:11<03:02, loss=nan]", "g1"),
    ("nonnative", "my loss is nan since iteration 800, before was normal", "g1"),
    ("plain", "loss went down nicely at first and now it has been flat for days", "g2 c11"),
    ("terse", "loss bouncing up and down", "g3 c79 c33"),
    ("numbers", "20k steps in and the loss moved from 6.91 to just 6.85", "g4"),
    ("plain", "how do I pick a good learning rate, is there a range test", "g5"),
    ("jargon", "lr finder sweep from 1e-7 to 1", "g5"),
    ("logline", "param.grad is None for every layer after loss.backward()", "g6"),
    ("jargon", "I call .numpy() on the logits inside my loss function and now nothing trains", "g6"),
    ("logline", "RuntimeError: element 0 of tensors does not require grad and does not have a grad_fn", "g6"),
    ("numbers", "grad norm of the first layer 1e-9, last layer 0.5, 40-layer plain net with sigmoid", "g7 c94"),
    ("jargon", "clip_grad_norm_ returns 2500 in my transformer", "g8 c10"),
    ("plain", "my language model generates the same phrase over and over", "g9"),
    ("nonnative", "the generation repeat same word again and again", "g9"),
    ("indirect", "sampling from the LM gives word salad", "g10"),
    ("logline", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)", "g11"),
    ("terse", "cuda oom with bigger batch", "g11"),
    ("nonnative", "gpu memory is not enough when i increase sequence length", "g11"),
    ("logline", "train_loss=0.21 val_loss=1.87 (epoch 40)", "g12 c4"),
    ("nonnative", "validation loss go up but training loss go down", "g12 c4"),
    ("jargon", "GPU util 15%, dataloader num_workers=0", "g13 c14"),
    ("terse", "lots of unk tokens", "g14"),
    ("logline", "[UNK] [UNK] the [UNK] model [UNK]", "g14"),
    ("plain", "decoding the token ids gives back text different from what I encoded", "g15"),
    ("numbers", "attention probabilities all ~0.0039 with seq_len 256", "g16 c77 c38"),
    ("jargon", "GPT-style decoder gets suspiciously low train loss but generates garbage, causal mask?", "g17"),
    ("jargon", "RLHF with PPO: reward keeps climbing but outputs get worse", "g18"),
    ("terse", "reward hacking", "g18"),
    ("logline", "DPOTrainer rewards/margins 0.0, loss stuck at 0.6931", "g19"),
    ("jargon", "TRL DPO training loss flat with beta=0.5", "g19"),
    # ---- audit ----
    ("plain", "my kernel activation function layer outputs only zeros and all logits are identical", "a1"),
    ("plain", "gradients explode because the features are too large and there is no normalization", "a2 c10 g8"),
    ("numbers", "50 classes but the model only ever predicts 3 or 4 of them", "a3 c24"),
    ("numbers", "accuracy 2-8% with 500 training samples across 50 classes", "a4"),
    ("indirect", "about ten examples per class and the classifier barely beats guessing", "a4 c62"),
    # ---- run analysis ----
    ("plain", "the relational loss on pairwise embedding distances grows as the effective rank goes up", "rp1 rf11"),
    ("logline", "step 3000 vq refresh: codebook usage 18% -> 30% -> 13%", "rp2 rf12"),
    ("jargon", "dead-code reset in VQ-VAE makes the latent mapping jump", "rp2 rf12"),
    ("plain", "one of my four loss terms explodes while the others are fine, no weighting between them", "rp3 rf32 rf11"),
    ("jargon", "is my JEPA setup in line with LeJEPA or does it have too many heuristics", "rp4 rf22 rf21"),
    ("indirect", "should I just drop the auxiliary pairwise-distance loss term that keeps blowing up", "rf11 rp1"),
    ("terse", "turn off codebook refresh", "rf12 rp2"),
    ("jargon", "EarlyStopping with patience 30 stops long after the best val loss", "rf13"),
    ("jargon", "make SIGReg the main regularizer instead of InfoNCE", "rf21 rp4"),
    ("plain", "there are over twenty hyperparameters across loss, optimizer and scheduler, how do I cut them down", "rf22"),
    ("jargon", "drop the EMA target encoder and use one shared encoder", "rf23"),
    ("plain", "the context attention module did not lower validation loss when the window is only 3 frames", "rf31"),
    ("jargon", "GradNorm to balance the InfoNCE and SIGReg losses", "rf32 rp3"),
    ("plain", "start training on easy tasks and add the harder ones later", "rf33"),
    ("numbers", "codebook of 768 codes with only 13-30% of them used", "rf34 rp2"),
    # ---- more terse ----
    ("terse", "rank collapse", "c1 c3 c7"),
    ("terse", "noisy conv filters", "c2 c46"),
    ("terse", "val loss rising", "g12 c4"),
    ("terse", "norms blowing up", "c31 c97"),
    ("terse", "dead codebook entries", "rp2 rf34 rf12"),
    ("terse", "amp nan", "c92 g1"),
    ("terse", "no clusters in tsne", "c9 c39"),
    ("terse", "lr too low", "g4 g2 g19"),
    ("terse", "uniform attention", "g16 c77 c38"),
    ("terse", "dpo stuck", "g19"),
    ("terse", "repeating outputs", "g9"),
    ("terse", "bn unstable", "c15 c87"),
    ("terse", "eval metric flat", "c59"),
    ("terse", "huge seed variance", "c23"),
    # ---- more indirect ----
    ("indirect", "my plots of the features look like a single dot", "c3 c9 c35"),
    ("indirect", "the network gives the same answer for everything", "c24 a3"),
    ("indirect", "the model seems to cheat while training but is useless when it has to write text itself", "g17"),
    ("indirect", "after a while every epoch takes longer than the one before", "c52"),
    ("indirect", "my run is healthy for a while then the numbers turn into not-a-number", "g1"),
    ("indirect", "throwing more images at the model has no effect at all", "c84"),
    ("indirect", "the pretrained backbone helps less than starting from nothing", "c86 c13"),
    ("indirect", "the model's outputs look identical no matter which image I feed it", "c66 c12"),
    ("indirect", "the validation curve keeps trailing the training curve", "c41"),
    ("indirect", "it looks like only the top of the network learns, the bottom stays where it started", "c80 g7"),
    # ---- more nonnative ----
    ("nonnative", "the embedding all become same, why?", "c3 c35"),
    ("nonnative", "model only say the majority class", "c24 a3"),
    ("nonnative", "my loss is not going down with dpo", "g19"),
    ("nonnative", "weights not change although gradient is exist", "c90"),
    ("nonnative", "training very slow, gpu is almost not used", "g13 c14"),
    ("nonnative", "the attention of transformer look at every token same", "g16 c77"),
    ("nonnative", "feature norm is very different between batch", "c48"),
    ("nonnative", "my model memorize the train data very fast", "c61"),
    ("nonnative", "checkpoint file is too much big", "c17"),
    ("nonnative", "pretrain make downstream worse than random init", "c86"),
    # ---- more jargon ----
    ("jargon", "Lightning: val_loss_epoch rising while train_loss_step keeps falling", "g12 c4"),
    ("jargon", "HF Trainer eval_loss goes up while loss goes down", "g12 c4"),
    ("jargon", "DeepSpeed ZeRO-3 and still OOM", "g11"),
    ("jargon", "LoRA fine-tune loss barely moves at lr 1e-6", "g4 g2"),
    ("jargon", "GRPO reward rising but completions degenerate", "g18"),
    ("jargon", "VICReg variance term stuck at 1.0", "c3 c12"),
    ("jargon", "MoCo queue features all look alike", "c3 c35"),
    # ---- more logline ----
    ("logline", "{'loss': 2.3026, 'grad_norm': 0.0, 'learning_rate': 5e-05, 'epoch': 3.0}", "g6"),
    ("logline", "Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 1024", "c92"),
    ("logline", "RuntimeError: CUDA error: out of memory", "g11"),
    ("logline", "train/codebook_usage=0.04 train/perplexity=12.3", "rp2 rf34 rf12"),
    ("logline", "eval_loss: 2.91, loss: 0.12, epoch: 12", "g12 c4"),
    ("logline", "lr=3.0e-02 loss=inf", "g1"),
    ("logline", "time/epoch_s: 41.2 ... 58.9 ... 97.3", "c52"),
    ("logline", "WARNING: 45% of ReLU units dead in block4", "c21"),
    # ---- more numbers ----
    ("numbers", "between epochs 10-20 the validation loss rises while train keeps dropping", "g12 c4"),
    ("numbers", "cross-entropy stuck at 2.3026 with 10 classes", "g6 c11 g2"),
    ("numbers", "val acc 0.5 on a balanced binary task after 30 epochs, loss 0.693", "g6 c11 g2"),
]


def main() -> None:
    rows = []
    seen = set()
    for style, q, exp in Q:
        assert q not in seen, q
        seen.add(q)
        ids = [IDS[x] for x in exp.split()]
        half = "tune" if int(hashlib.md5(q.encode()).hexdigest(), 16) % 2 == 0 else "heldout"
        rows.append({"q": q, "style": style, "expected": ids, "half": half})
    (HERE / "queries.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    covered = {r["expected"][0] for r in rows} | {i for r in rows for i in r["expected"]}
    print(len(rows), "queries;", len(covered), "of", len(IDS), "entries covered;",
          sum(r["half"] == "tune" for r in rows), "tune")


if __name__ == "__main__":
    main()
