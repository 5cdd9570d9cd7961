"""jieba's precise mode (``jieba.Tokenizer.cut(text, cut_all=False, HMM=…)``) as TensorFlow ops, token
for token, so the LSTM's SavedModel takes raw text and stock TF Serving runs it.

Built from the installed jieba's own state — the prefix dictionary after any user dictionary (``FREQ``,
``total``), the forced splits of zero-frequency user words and ``finalseg``'s HMM tables — and written
with core TensorFlow ops plus tensorflow-text's ``RegexSplitWithOffsets``. The steps mirror jieba's:

1. blocks: runs of ``re_han_default`` characters; every other character is its own token;
2. the DAG of dictionary words over each block, walked as a trie (one binary search in a sorted array
   of int64 keys per character of a dictionary prefix, so only substrings that are prefixes are ever
   looked up);
3. the maximum-probability route, right to left, with jieba's tie rule (the longer word). Weights are
   Python's own float64 ``log(freq) - log(total)``, so the graph only adds and ties break bit for bit;
4. without the HMM, consecutive one-character ASCII letters/digits merge; with it, runs of
   one-character words that are not a dictionary word go to ``finalseg``: Han runs through its Viterbi
   (allowed previous states, its tie rule), Latin/digit runs (``3.14``, ``95%``) whole.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

HAN_FIRST, HAN_LAST = 0x4E00, 0x9FD5  # jieba's Han range, in re_han_default and finalseg.re_han
BLOCK_SYMBOLS = "+#&._%-"  # with ASCII letters and digits, the rest of re_han_default's class
FINALSEG_PIECE = r"[\x{4E00}-\x{9FD5}]+|[a-zA-Z0-9]+(?:\.[0-9]+)?%?"  # finalseg.re_han, then re_skip
CHAR_BITS = 21  # a trie key is parent node << 21 | code point
STATES = "BMES"  # finalseg's order; ties compare the letters
MIN_FLOAT = -3.14e100  # finalseg.MIN_FLOAT


def _trie(freq: dict[str, int], total: int) -> tuple[np.ndarray, np.ndarray]:
    """jieba's prefix dictionary as a trie whose node ids are positions in one sorted array of keys
    (parent << 21 | code point), and each node's route weight (-inf for a prefix that is not a word,
    i.e. frequency 0; node 0 is the root).

    Nodes are numbered level by level, in key order within a level; every key of a level then exceeds
    every key of the level before, so the keys come out sorted and a lookup is a binary search."""
    log_total = math.log(total)
    node, keys, weights = {"": 0}, [], [-np.inf]
    by_length: dict[int, list[str]] = {}
    for word in freq:
        by_length.setdefault(len(word), []).append(word)
    for length in sorted(by_length):  # parents before children: the dictionary holds every prefix
        level = sorted(((node[w[:-1]] << CHAR_BITS) | ord(w[-1]), w) for w in by_length[length])
        for key, word in level:
            node[word] = len(keys) + 1
            keys.append(key)
            weights.append(math.log(freq[word]) - log_total if freq[word] else -np.inf)  # as jieba's calc()
    return np.array(keys, np.int64), np.array(weights)


def _hmm_tables():
    """finalseg's start, transition (previous × next) and Han emission tables as float64 arrays."""
    from jieba import finalseg

    start = np.array([finalseg.start_P[s] for s in STATES])
    trans = np.array([[finalseg.trans_P[a].get(b, MIN_FLOAT) for b in STATES] for a in STATES])
    emit = np.full((len(STATES), HAN_LAST - HAN_FIRST + 1), MIN_FLOAT)
    for i, s in enumerate(STATES):
        for char, p in finalseg.emit_P[s].items():
            if HAN_FIRST <= ord(char) <= HAN_LAST:
                emit[i, ord(char) - HAN_FIRST] = p
    return start, trans, emit


def _mask(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``tf.boolean_mask`` of a vector, in a few nodes (its general form adds dozens to the graph)."""
    return tf.gather(values, tf.where(mask)[:, 0])


class JiebaGraph(tf.Module):
    """``cut(text, HMM=hmm)`` of one ``jieba.Tokenizer`` (user dictionary loaded) as graph ops.

    Args:
        jieba_tokenizer: an initialised ``jieba.Tokenizer``; its dictionary is copied.
        hmm: jieba's HMM for runs of single characters.
        force_split: the words finalseg must split into characters (user words of frequency 0).
    """

    def __init__(self, jieba_tokenizer, hmm: bool, force_split: frozenset[str] = frozenset()):
        super().__init__(name="jieba")
        jieba_tokenizer.check_initialized()
        self.hmm = hmm
        self.max_word_length = max(map(len, jieba_tokenizer.FREQ))
        self.log_total = math.log(jieba_tokenizer.total)
        keys, weights = _trie(jieba_tokenizer.FREQ, jieba_tokenizer.total)
        self.trie_keys = tf.Variable(keys, trainable=False, name="trie_keys")
        self.weights = tf.Variable(weights, trainable=False, name="route_weights")
        start, trans, emit = _hmm_tables()
        self.start, self.trans = start, trans
        self.emit = tf.Variable(emit, trainable=False, name="emission")
        self.force_split = None
        if force_split:
            words = sorted(force_split)
            self.force_split = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(words, np.ones(len(words), np.int64)), 0)

    # -- the DAG and the route ------------------------------------------------------------------

    def _child(self, keys: tf.Tensor) -> tf.Tensor:
        """The trie node of each key (parent << 21 | code point), -1 where the dictionary has none."""
        at = tf.searchsorted(self.trie_keys, keys, side="left", out_type=tf.int64)
        hit = tf.gather(self.trie_keys, tf.minimum(at, tf.size(self.trie_keys, out_type=tf.int64) - 1))
        return tf.where(tf.equal(hit, keys), at + 1, -1)

    def _dag_weights(self, cps: tf.Tensor, room: tf.Tensor) -> tf.Tensor:
        """[N, L]: for each block character, the weight of the word of l+1 characters starting there,
        -inf if that is not a dictionary word; a character that starts no word gets ``-log(total)``.

        Args:
            cps: [N] code points of the blocks' characters, block after block.
            room: [N] characters from each position to the end of its block.
        """
        n = tf.shape(cps, out_type=tf.int64)[0]

        def level(depth, pos, nodes, found_idx, found_w):  # only dictionary prefixes go on to the next level
            keep = tf.where(tf.gather(room, pos) > depth)[:, 0]
            pos, nodes = tf.gather(pos, keep), tf.gather(nodes, keep)
            nodes = self._child(tf.bitwise.left_shift(nodes, CHAR_BITS) | tf.gather(cps, pos + depth))
            keep = tf.where(nodes >= 0)[:, 0]
            pos, nodes = tf.gather(pos, keep), tf.gather(nodes, keep)
            w = tf.gather(self.weights, nodes)
            word = tf.where(tf.math.is_finite(w))[:, 0]
            word_pos = tf.gather(pos, word)
            i = tf.cast(depth, tf.int32)
            found_idx = found_idx.write(i, tf.stack([word_pos, tf.fill(tf.shape(word_pos), depth)], 1))
            return depth + 1, pos, nodes, found_idx, found_w.write(i, tf.gather(w, word))

        _, _, _, found_idx, found_w = tf.while_loop(
            lambda depth, pos, *_: (tf.size(pos) > 0) & (depth < self.max_word_length), level,
            (tf.constant(0, tf.int64), tf.range(n), tf.zeros([n], tf.int64),
             tf.TensorArray(tf.int64, size=0, dynamic_size=True, infer_shape=False, element_shape=[None, 2]),
             tf.TensorArray(tf.float64, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])))
        found = found_idx.size() > 0  # an empty batch has no level at all
        idx = tf.cond(found, found_idx.concat, lambda: tf.zeros([0, 2], tf.int64))
        w = tf.cond(found, found_w.concat, lambda: tf.zeros([0], tf.float64))
        levels = tf.reduce_max(tf.concat([idx[:, 1], [0]], 0)) + 1
        dag = tf.tensor_scatter_nd_update(tf.fill(tf.stack([n, levels]), tf.constant(-np.inf, tf.float64)), idx, w)
        lonely = ~tf.reduce_any(tf.math.is_finite(dag), axis=1)
        first = tf.where(lonely, tf.constant(-self.log_total, tf.float64), dag[:, 0])
        return tf.concat([first[:, None], dag[:, 1:]], axis=1)

    @staticmethod
    def _route(dag: tf.Tensor, lengths: tf.Tensor, block_of: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
        """[N]: the length - 1 of the route's word at each block character (jieba's ``calc``).

        Right to left over positions; step k touches only the blocks longer than k, kept as a prefix
        by ordering blocks longest first, so the work follows the characters, not the padding.
        """
        nb = tf.shape(lengths, out_type=tf.int64)[0]
        levels = tf.shape(dag, out_type=tf.int64)[1]
        order = tf.cast(tf.argsort(-lengths, stable=True), tf.int64)
        rank = tf.math.invert_permutation(order)
        sorted_len = tf.gather(lengths, order)
        t = tf.reduce_max(tf.concat([lengths, [0]], 0))
        active = tf.searchsorted(-sorted_len, -tf.range(t), side="left", out_type=tf.int64)  # blocks longer than k
        offsets = tf.math.cumsum(active, exclusive=True)
        step_index = tf.gather(offsets, k) + tf.gather(rank, block_of)  # k-major, longest block first
        steps = tf.scatter_nd(step_index[:, None], dag, tf.shape(dag, out_type=tf.int64))
        level_ids = tf.range(levels)

        def body(k, window, choices):
            a = active[k]
            scores = steps[offsets[k]:offsets[k] + a] + window[:a]  # window: the route after l+1 characters
            best = tf.reduce_max(scores, axis=1)
            choice = tf.reduce_max(tf.where(scores == best[:, None], level_ids, -1), axis=1)  # tie: longer
            window = tf.concat([tf.concat([best[:, None], window[:a, :-1]], axis=1), window[a:]], axis=0)
            return k - 1, window, choices.write(tf.cast(k, tf.int32), choice)

        choices = tf.TensorArray(tf.int64, size=tf.cast(t, tf.int32), infer_shape=False,
                                 element_shape=tf.TensorShape([None]))
        _, _, choices = tf.while_loop(lambda k, *_: k >= 0, body,
                                      (t - 1, tf.zeros(tf.stack([nb, levels]), tf.float64), choices))
        stacked = tf.cond(t > 0, choices.concat, lambda: tf.zeros([0], tf.int64))
        return tf.gather(stacked, step_index)

    @staticmethod
    def _route_starts(choice: tf.Tensor, room: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
        """[N] bool: where the route's words start, followed from each block's start by pointer doubling."""
        n = tf.shape(choice, out_type=tf.int64)[0]
        jump = tf.where(choice + 1 < room, tf.range(n) + choice + 1, n)  # a block's last word → the sink
        jump = tf.concat([jump, [n]], 0)
        reach = tf.concat([tf.cast(tf.equal(k, 0), tf.int32), [0]], 0)
        longest = tf.reduce_max(tf.concat([room, [1]], 0))
        rounds = tf.cast(tf.math.ceil(tf.math.log(tf.cast(longest + 1, tf.float64)) / math.log(2.0)), tf.int64) + 1

        def body(i, reach, jump):
            reach = tf.maximum(reach, tf.math.unsorted_segment_max(reach, jump, n + 1))
            return i + 1, reach, tf.gather(jump, jump)

        _, reach, _ = tf.while_loop(lambda i, *_: i < rounds, body, (tf.constant(0, tf.int64), reach, jump))
        return reach[:-1] > 0

    # -- finalseg --------------------------------------------------------------------------------

    def _viterbi_ends(self, cps: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """[runs, T] bool: where finalseg's words end (state E or S) in each run of Han characters."""
        rank = {s: r for r, s in enumerate(sorted(STATES))}  # max() over (prob, state): ties to the later letter
        prev = {"B": "ES", "M": "MB", "S": "SE", "E": "BM"}  # finalseg.PrevStatus
        first = [STATES.index(prev[s][0]) for s in STATES]
        second = [STATES.index(prev[s][1]) for s in STATES]
        trans_first = tf.constant([self.trans[a, b] for b, a in enumerate(first)], tf.float64)
        trans_second = tf.constant([self.trans[a, b] for b, a in enumerate(second)], tf.float64)
        second_wins_tie = tf.constant([rank[prev[s][1]] > rank[prev[s][0]] for s in STATES])
        cps = tf.pad(cps, [[0, 0], [0, 1]])  # at least one column; padding never counts
        nr, t = tf.unstack(tf.shape(cps, out_type=tf.int64))
        han = tf.clip_by_value(cps - HAN_FIRST, 0, HAN_LAST - HAN_FIRST)
        emission = tf.transpose(tf.gather(self.emit, han, axis=1), [2, 1, 0])  # [T, runs, states]
        stay = tf.constant([0, 1, 2, 3], tf.int64)
        pointer_first, pointer_second = tf.constant(first, tf.int64), tf.constant(second, tf.int64)

        def forward(i, v, pointers):
            # finalseg: max over allowed previous states of (V[t-1][y0] + trans[y0][y]) + emit[y][char]
            a = tf.gather(v, first, axis=1) + trans_first + emission[i]
            b = tf.gather(v, second, axis=1) + trans_second + emission[i]
            take_second = (b > a) | ((b == a) & second_wins_tie)
            live = (i < lengths)[:, None]
            v = tf.where(live, tf.where(take_second, b, a), v)  # past a run's end the state stays put
            pointer = tf.where(live, tf.where(take_second, pointer_second, pointer_first), stay)
            return i + 1, v, pointers.write(tf.cast(i, tf.int32), pointer)

        v0 = tf.constant(self.start, tf.float64)[None, :] + emission[0]
        pointers = tf.TensorArray(tf.int64, size=tf.cast(t, tf.int32), element_shape=tf.TensorShape([None, 4]))
        pointers = pointers.write(0, tf.tile(stay[None, :], tf.stack([nr, 1])))
        _, v, pointers = tf.while_loop(lambda i, *_: i < t, forward, (tf.constant(1, tf.int64), v0, pointers))
        pointers = pointers.stack()
        last = tf.where(v[:, 3] >= v[:, 2], tf.constant(3, tf.int64), tf.constant(2, tf.int64))  # S or E, S on a tie

        def backward(i, state, states):
            states = states.write(tf.cast(i, tf.int32), state)
            return i - 1, tf.gather(pointers[i], state, batch_dims=1), states

        states = tf.TensorArray(tf.int64, size=tf.cast(t, tf.int32), element_shape=tf.TensorShape([None]))
        _, _, states = tf.while_loop(lambda i, *_: i >= 0, backward, (t - 1, last, states))
        states = tf.transpose(states.stack())
        return (states >= 2)[:, :-1]  # E or S

    # -- the whole cut ---------------------------------------------------------------------------

    def _finalseg_starts(self, chars: tf.Tensor, cps: tf.Tensor, starts: tf.Tensor, runs: tf.Tensor,
                         run_of: tf.Tensor) -> tf.Tensor:
        """Word starts after ``finalseg.cut`` of each run of characters.

        Args:
            chars, cps: [N] block characters and their code points.
            starts: [N] bool, the word starts so far.
            runs: [R] the first position of each run to cut.
            run_of: [N] the run of each position, -1 outside the runs.
        """
        n_runs = tf.shape(runs, out_type=tf.int64)[0]
        inside = run_of >= 0
        bufs = tf.strings.unsorted_segment_join(_mask(chars, inside), _mask(run_of, inside),
                                                n_runs)
        pieces = tf_text.regex_split(bufs, FINALSEG_PIECE, keep_delim_regex_pattern=FINALSEG_PIECE)
        piece_len = tf.cast(tf.strings.length(pieces.flat_values, unit="UTF8_CHAR"), tf.int64)
        before = tf.math.cumsum(piece_len, exclusive=True)
        piece_start = tf.gather(runs, pieces.value_rowids()) + before - tf.gather(before, tf.gather(
            pieces.row_starts(), pieces.value_rowids()))
        starts = starts & ~inside  # inside a run only finalseg's pieces and words start
        starts = tf.tensor_scatter_nd_update(starts, piece_start[:, None], tf.ones_like(piece_start, tf.bool))
        han = tf.strings.regex_full_match(pieces.flat_values, r"[\x{4E00}-\x{9FD5}]+")
        han_start, han_len = _mask(piece_start, han), _mask(piece_len, han)
        han_cps = tf.RaggedTensor.from_row_lengths(
            tf.gather(cps, tf.ragged.range(han_start, han_start + han_len).flat_values), han_len, validate=False).to_tensor(0)
        ends = self._viterbi_ends(han_cps, han_len)
        t = tf.shape(ends, out_type=tf.int64)[1]
        word_start = tf.where(ends & (tf.range(t)[None, :] + 1 < han_len[:, None]))  # (run, t): a word starts at t + 1
        positions = tf.gather(han_start, word_start[:, 0]) + word_start[:, 1] + 1
        starts = tf.tensor_scatter_nd_update(starts, positions[:, None], tf.ones_like(positions, tf.bool))
        if self.force_split is not None:
            starts = self._force_split(chars, starts, han_start, han_len)
        return starts

    def _force_split(self, chars, starts, han_start, han_len):
        """finalseg's words that are zero-frequency user words, split into characters."""
        in_han = tf.ragged.range(han_start, han_start + han_len).flat_values
        word_of = tf.math.cumsum(tf.cast(tf.gather(starts, in_han), tf.int64)) - 1
        words = tf.strings.unsorted_segment_join(tf.gather(chars, in_han), word_of,
                                                 tf.reduce_max(tf.concat([word_of, [-1]], 0)) + 1)
        forced = tf.gather(self.force_split.lookup(words), word_of) > 0
        positions = _mask(in_han, forced)
        return tf.tensor_scatter_nd_update(starts, positions[:, None], tf.ones_like(positions, tf.bool))

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """[B] cleaned strings → [B, None] tokens, as ``jieba.Tokenizer.lcut(text, HMM=hmm)`` minus the
        whitespace tokens."""
        chars = tf.strings.unicode_split(texts, "UTF-8")
        cps = tf.cast(tf.strings.unicode_decode(texts, "UTF-8").flat_values, tf.int64)
        flat_chars, rows = chars.flat_values, chars.value_rowids()
        n = tf.shape(cps, out_type=tf.int64)[0]
        ascii_alnum = ((cps >= ord("a")) & (cps <= ord("z"))) | ((cps >= ord("A")) & (cps <= ord("Z"))) | (
            (cps >= ord("0")) & (cps <= ord("9")))
        in_block = ascii_alnum | ((cps >= HAN_FIRST) & (cps <= HAN_LAST))
        for symbol in BLOCK_SYMBOLS:
            in_block |= tf.equal(cps, ord(symbol))
        new_row = tf.not_equal(rows, tf.concat([[-1], rows[:-1]], 0))
        block_start = in_block & (new_row | ~tf.concat([[False], in_block[:-1]], 0))
        block_of = tf.math.cumsum(tf.cast(block_start, tf.int64)) - 1
        # From here on, the blocks' characters only, block after block.
        in_block_pos = tf.where(in_block)[:, 0]
        block_of = tf.gather(block_of, in_block_pos)
        blocks = tf.RaggedTensor.from_value_rowids(tf.gather(cps, in_block_pos), block_of,
                                                   nrows=tf.reduce_sum(tf.cast(block_start, tf.int64)), validate=False)
        lengths = blocks.row_lengths()
        k = tf.range(tf.shape(block_of, out_type=tf.int64)[0]) - tf.gather(blocks.row_starts(), block_of)
        room = tf.gather(lengths, block_of) - k
        block_cps = blocks.flat_values
        dag = self._dag_weights(block_cps, room)
        choice = self._route(dag, lengths, block_of, k)
        starts = self._route_starts(choice, room, k)
        one_char = starts & tf.equal(choice, 0)
        if self.hmm:
            block_starts = self._hmm(dag, starts, one_char, k, tf.gather(flat_chars, in_block_pos), block_cps)
        else:
            alnum = one_char & tf.gather(ascii_alnum, in_block_pos)
            # Consecutive one-character ASCII letters/digits are one token (jieba's re_eng buffer).
            merged = alnum & tf.concat([[False], alnum[:-1]], 0) & (k > 0)
            block_starts = starts & ~merged
        start = tf.tensor_scatter_nd_update(tf.ones([n], tf.bool), in_block_pos[:, None], block_starts)
        token_of = tf.math.cumsum(tf.cast(start, tf.int64)) - 1
        n_tokens = tf.reduce_sum(tf.cast(start, tf.int64))
        tokens = tf.RaggedTensor.from_value_rowids(
            tf.strings.unsorted_segment_join(flat_chars, token_of, n_tokens), _mask(rows, start),
            nrows=tf.shape(texts, out_type=tf.int64)[0], validate=False)
        return tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, " "))

    def _hmm(self, dag, starts, one_char, k, chars, cps):
        """Word starts (one per block character) with jieba's HMM over runs of one-character words."""
        single = one_char
        run_start = single & ((k == 0) | ~tf.concat([[False], single[:-1]], 0))
        run_of = tf.where(single, tf.math.cumsum(tf.cast(run_start, tf.int64)) - 1, -1)
        n_runs = tf.reduce_sum(tf.cast(run_start, tf.int64))
        run_len = tf.math.unsorted_segment_sum(tf.cast(single, tf.int64), run_of, n_runs)  # -1: dropped
        run_first = tf.where(run_start)[:, 0]
        # A run that is itself a dictionary word stays in characters; one of one character is left alone.
        levels = tf.shape(dag, out_type=tf.int64)[1]
        level = tf.minimum(run_len - 1, levels - 1)
        is_word = tf.math.is_finite(tf.gather_nd(dag, tf.stack([run_first, level], 1))) & (run_len - 1 < levels)
        to_cut = (run_len >= 2) & ~is_word
        cut_rank = tf.concat([tf.math.cumsum(tf.cast(to_cut, tf.int64)) - 1, [-1]], 0)
        run_of = tf.gather(tf.where(tf.concat([to_cut, [False]], 0), cut_rank, -1), tf.where(single, run_of, n_runs))
        return self._finalseg_starts(chars, cps, starts, _mask(run_first, to_cut), run_of)
