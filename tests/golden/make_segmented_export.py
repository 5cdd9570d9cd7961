"""Writes a tiny LSTM export with sentiment_tf 7d8a538 (segmented input), for the backward-compatibility tests."""
import sys
from pathlib import Path

import keras
import numpy as np

from sentiment_tf.core.config import ModelConfig
from sentiment_tf.models.lstm import classifier as lstm
from sentiment_tf.models.lstm.preprocessor import Preprocessor, Tokenizer, build_vocabulary

LABELS = ["正面", "负面"]
TEXTS = ["这家酒店很干净，服务也好", "房间太小了，还很吵，再也不来了", "早餐丰富位置方便", "空调坏了也没人修",
         "物流很快包装完好", "质量太差了", "屏幕分辨率很高，iPhone15 Pro 用着舒服", "太差了，再也不来了"] * 4
keras.utils.set_random_seed(0)
out = Path(sys.argv[1])
udict = out.parent / "user_dict.txt"
udict.write_text("再也不来 10 v\n", encoding="utf-8")
tokenizer = Tokenizer("word", user_dict=udict)
segmented = tokenizer.segment(TEXTS)
vocab = build_vocabulary(segmented, min_freq=1)
pre = Preprocessor(tokenizer, vocab, 20)
model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4), len(vocab) + 2, len(LABELS))
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
y = np.arange(len(TEXTS)) % 2
model.fit(pre.dataset(segmented, y, 8), epochs=3, verbose=0)
print(lstm.export(model, pre, LABELS, out, config={"ModelConfig": {"embedding_dim": 8, "rnn_units": 4}}, metrics={"accuracy": 0.5},
                  check_texts=segmented[:8], temperature=1.25))
