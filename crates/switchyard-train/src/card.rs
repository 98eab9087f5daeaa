//! The model card written beside the head: data, size, experts, ablation,
//! training time and the dev figures, all from the run that made the head.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use switchyard_eval::{Group, Report, Split};

use crate::{DevResult, TrainSummary, TrainingData};

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn other(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), pct)
}

fn group_of(report: &Report) -> Group {
    Group {
        cases: report.cases,
        accuracy: report.accuracy,
        other_recall: report.other_recall,
        conversation_accuracy: report.conversation_accuracy,
    }
}

fn row(out: &mut String, set: &str, classifier: &str, g: &Group) {
    let _ = writeln!(
        out,
        "| {set} | {classifier} | {} | {} | {} | {} |",
        g.cases,
        pct(g.accuracy),
        other(g.other_recall),
        pct(g.conversation_accuracy)
    );
}

/// Renders the card.
pub fn render(summary: &TrainSummary, data: &TrainingData) -> String {
    let o = &summary.options;
    let h = &o.head;
    let mut out = String::new();
    let _ = writeln!(out, "# Model card: switchyard `moe` routing head\n");
    let _ = writeln!(
        out,
        "The `moe` classifier's trained head (`head.mpk`, shape in `head.json`), written by \
         `switchyard train` with seed {}. It reads frozen all-MiniLM-L6-v2 embeddings \
         (fetched by `models/fetch.sh`, not part of this directory) of the routed turn, up to {} \
         earlier turns with role and recency, and the system prompt, plus one embedding per route \
         (\"name: description\"). Route descriptions are inputs: a new router needs no retraining.\n",
        o.fit.seed,
        h.turn_slots.saturating_sub(2),
    );
    let _ = writeln!(out, "## Architecture\n");
    let _ = writeln!(
        out,
        "- Turns: a linear projection to {d}, plus role and recency embeddings, then one pre-norm \
         transformer block ({heads} heads) whose feed-forward is a Mixture of Experts.\n\
         - Routes: projected to {d}; each reads the turns by cross-attention; a pair vector \
         (route × routed turn, route × what it read, |route − turn|, and the route's cosine, gap to \
         the set's best and z-score in the set) goes through a second MoE feed-forward to a residual.\n\
         - Route logit = cosine / {tau} + {bound} · tanh(residual). The cosine is the `embedding` \
         classifier's score and is not a learned weight; the learned part is bounded, so the head \
         reorders close routes but cannot unlearn the similarity prior.\n\
         - `other` logit: from the routed turn, the pooled route states and set-relative statistics \
         (best, runner-up, mean, spread, the best's lead in spreads); it competes with the routes in \
         one softmax, so `other` is decided relative to the route set at hand.\n\
         - MoE layers: {e} experts (each {d} → {eh} → {d}, GELU), a learned softmax gate, top-{k} \
         with renormalised weights, Switch-style load-balancing loss (weight 0.01). At inference only \
         the selected experts run (the dense mixture is used in training; a unit test checks both agree).\n",
        d = h.hidden,
        heads = h.attention_heads,
        tau = h.prior_temperature,
        bound = h.residual_bound,
        e = h.experts,
        eh = h.expert_hidden,
        k = h.top_k,
    );
    let (total, active) = summary.params;
    let _ = writeln!(
        out,
        "**Parameters:** {total} in total, {active} active per token ({:.0}%). Weights stored in half precision.\n",
        active as f64 * 100.0 / total.max(1) as f64
    );

    let _ = writeln!(out, "## Data\n");
    let _ = writeln!(
        out,
        "Training never reads a `test` split. Shared datasets (../shared/datasets, see its README): \
         `train` splits, seeded subsamples. Our corpus (`corpus/`, see `corpus/DATASHEET.md`): its \
         train split, each decision re-phrased every epoch (a random description per route, \
         shuffled order), 12% with the expected route removed (expects `other`), 30% with 1–3 \
         distractor routes from other domains.\n"
    );
    let _ = writeln!(out, "| source | training cases per epoch |\n|---|---|");
    for (source, n) in &summary.train_by_source {
        let _ = writeln!(out, "| {source} | {n} |");
    }
    let _ = writeln!(out, "| total | {} |\n", summary.train_cases);
    let unseen_sets = data.corpus.sets_in(Split::DevUnseen);
    let mut unseen_sorted: Vec<&str> = unseen_sets.iter().copied().collect();
    unseen_sorted.sort_unstable();
    let _ = writeln!(
        out,
        "- Dev sets: our in-distribution dev (`corpus:dev-seen`, {} cases: held-out conversations \
         of training route sets), our unseen-route-set dev (`corpus:dev-unseen`, {} cases over {} \
         route sets: all of the held-out domains {} and one set of every other domain), and the \
         shared `dev` splits ({} cases, subsampled). The epoch kept is the best on the mean of \
         `dev-seen` and shared-dev accuracy; `dev-unseen` is only reported.\n\
         - Unseen route sets: {}.\n\
         - Texts embedded (turns and route phrasings, cached in `{}`): {}; encoding took {:.0} s.\n",
        data.dev_seen.len(),
        data.dev_unseen.len(),
        unseen_sets.len(),
        switchyard_eval::corpus::HELD_OUT_DOMAINS.join(", "),
        data.shared_dev.len(),
        unseen_sorted.join(", "),
        o.store.display(),
        summary.texts_embedded,
        summary.encode_time.as_secs_f64(),
    );

    let _ = writeln!(out, "## Training\n");
    let _ = writeln!(
        out,
        "AdamW (weight decay 1e-4), learning rate {} with 5% warm-up and cosine decay to a tenth, \
         batch {}, {} epochs, best epoch {}; burn autodiff on the flex CPU backend, 2 cores: \
         {:.1} min (the dense twin, if trained, not included).\n",
        o.fit.learning_rate,
        o.fit.batch,
        o.fit.epochs,
        summary.best_epoch + 1,
        summary.train_time.as_secs_f64() / 60.0
    );
    let _ = writeln!(
        out,
        "`other` calibration: after training, a bias on the `other` logit is chosen from \
         -4 to +2 by the same dev sets (mean accuracy); this head's is {} (in `head.json`, \
         applied at inference). Figures below include it; the dense twin gets its own.\n",
        h.other_bias
    );

    let _ = writeln!(out, "## Evaluation (dev sets; the README has the test-set table)\n");
    let _ = writeln!(
        out,
        "| set | classifier | cases | turn accuracy | `other` recall | conversation accuracy |\n|---|---|---|---|---|---|"
    );
    for (name, result) in [
        ("corpus dev-seen", &summary.dev_seen),
        ("corpus dev-unseen", &summary.dev_unseen),
    ] {
        row(&mut out, name, "moe", &group_of(&result.moe));
        row(&mut out, name, "embedding", &group_of(&result.embedding));
    }
    for (source, g) in &summary.shared_dev.moe.by_source {
        row(&mut out, &format!("{source} dev"), "moe", g);
        if let Some(e) = summary.shared_dev.embedding.by_source.get(source) {
            row(&mut out, &format!("{source} dev"), "embedding", e);
        }
    }
    let _ = writeln!(out);
    tag_table(&mut out, summary, data);
    unseen_table(&mut out, &summary.dev_unseen);
    let _ = writeln!(
        out,
        "Head latency (one decision, sparse experts, encoder excluded, this CPU): p50 {:.3} ms.\n",
        summary.dev_unseen.head_p50_ms
    );

    experts(&mut out, summary);

    let _ = writeln!(out, "## MoE vs dense ablation\n");
    match &summary.dense {
        Some(((dense_total, dense_active), seen, unseen)) => {
            let _ = writeln!(
                out,
                "Same data, seed and schedule; the dense twin has one expert as wide as the MoE's \
                 {k} active experts together (same active size).\n\n\
                 | head | parameters (active) | dev-unseen accuracy | dev-unseen `other` recall | dev-seen accuracy |\n|---|---|---|---|---|\n\
                 | MoE ({e} experts, top-{k}) | {total} ({active}) | {} | {} | {} |\n\
                 | dense | {dense_total} ({dense_active}) | {} | {} | {} |\n",
                pct(summary.dev_unseen.moe.accuracy),
                other(summary.dev_unseen.moe.other_recall),
                pct(summary.dev_seen.moe.accuracy),
                pct(unseen.moe.accuracy),
                other(unseen.moe.other_recall),
                pct(seen.moe.accuracy),
                e = h.experts,
                k = h.top_k,
            );
        }
        None => {
            let _ = writeln!(out, "Not run in this training (`--ablation` runs it).\n");
        }
    }
    let _ = writeln!(out, "## Limitations\n");
    let _ = writeln!(
        out,
        "- The encoder is English-only: non-English turns are routed mostly by the similarity of \
         shared tokens (names, code, numbers) and by context.\n\
         - The corpus was written for this project (by several writers working in parallel, each \
         on its own domains); it is varied but not real traffic.\n\
         - `other` is learned from closings, off-topic asks and routes removed from a set; a \
         deployment whose `other` traffic looks different should check `other` recall on its own data.\n"
    );
    out
}

/// Turn accuracy by corpus tag (follow-ups, long pastes...), both corpus
/// dev sets together.
fn tag_table(out: &mut String, summary: &TrainSummary, data: &TrainingData) {
    let tags: std::collections::HashMap<&str, &[String]> = data
        .corpus
        .decisions
        .iter()
        .map(|d| (d.id.as_str(), d.tags.as_slice()))
        .collect();
    let mut counts: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (cases, result) in [(&data.dev_seen, &summary.dev_seen), (&data.dev_unseen, &summary.dev_unseen)] {
        for (case, (moe, embedding)) in cases.iter().zip(&result.answers) {
            for tag in tags.get(case.id.as_str()).copied().unwrap_or_default() {
                let entry = counts.entry(tag.as_str()).or_insert((0, 0, 0));
                entry.0 += 1;
                entry.1 += usize::from(*moe == case.expected);
                entry.2 += usize::from(*embedding == case.expected);
            }
        }
    }
    let _ = writeln!(
        out,
        "By kind of turn (corpus dev-seen and dev-unseen together; a turn can have several tags, see the datasheet):\n\n| tag | cases | moe | embedding |\n|---|---|---|---|"
    );
    for (tag, (n, moe, embedding)) in &counts {
        let share = |k: usize| pct(k as f64 / (*n).max(1) as f64);
        let _ = writeln!(out, "| {tag} | {n} | {} | {} |", share(*moe), share(*embedding));
    }
    let _ = writeln!(out);
}

/// Per unseen route set: the head beside the `embedding` classifier.
fn unseen_table(out: &mut String, result: &DevResult) {
    let _ = writeln!(
        out,
        "Per unseen route set (turn accuracy), `moe` beside `embedding`:\n\n| route set | cases | moe | embedding | difference |\n|---|---|---|---|---|"
    );
    let mut below = 0;
    for (set, g) in &result.moe.by_category {
        let e = result.embedding.by_category.get(set).map_or(0.0, |e| e.accuracy);
        let diff = g.accuracy - e;
        if diff < 0.0 {
            below += 1;
        }
        let _ = writeln!(
            out,
            "| {set} | {} | {} | {} | {:+.2} |",
            g.cases,
            pct(g.accuracy),
            pct(e),
            diff * 100.0
        );
    }
    let _ = writeln!(
        out,
        "\n`moe` is below `embedding` on {below} of {} unseen route sets.\n",
        result.moe.by_category.len()
    );
}

/// Expert load and what each expert specialises in (route scorer layer).
fn experts(out: &mut String, summary: &TrainSummary) {
    let experts = summary.options.head.experts;
    let _ = writeln!(out, "## Experts\n");
    let mut totals = vec![0u64; experts];
    let mut by_source: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for result in [&summary.dev_seen, &summary.dev_unseen, &summary.shared_dev] {
        for (source, load) in &result.expert_load {
            let entry = by_source.entry(source.clone()).or_insert_with(|| vec![0; experts]);
            for (i, n) in load.iter().enumerate() {
                totals[i] += n;
                entry[i] += n;
            }
        }
    }
    let all: u64 = totals.iter().sum::<u64>().max(1);
    let _ = writeln!(
        out,
        "Load of the route scorer's MoE layer on all dev sets (share of route tokens whose first \
         choice is each expert; perfectly even would be {:.1}% each):\n",
        100.0 / experts.max(1) as f64
    );
    let header: Vec<String> = (0..experts).map(|e| format!("e{e}")).collect();
    let _ = writeln!(out, "| tokens | {} |\n|---|{}", header.join(" | "), "---|".repeat(experts));
    let shares: Vec<String> = totals.iter().map(|n| format!("{:.1}%", *n as f64 * 100.0 / all as f64)).collect();
    let _ = writeln!(out, "| all | {} |", shares.join(" | "));
    for (source, load) in &by_source {
        let sum: u64 = load.iter().sum::<u64>().max(1);
        let shares: Vec<String> = load.iter().map(|n| format!("{:.0}%", *n as f64 * 100.0 / sum as f64)).collect();
        let _ = writeln!(out, "| {source} | {} |", shares.join(" | "));
    }
    // Specialisation: the routes most over-represented at each expert.
    let mut route_totals: BTreeMap<&str, u64> = BTreeMap::new();
    for result in [&summary.dev_seen, &summary.dev_unseen, &summary.shared_dev] {
        for map in &result.expert_routes {
            for (route, n) in map {
                *route_totals.entry(route.as_str()).or_insert(0) += n;
            }
        }
    }
    let _ = writeln!(
        out,
        "\nWhat each expert specialises in: the route names (with at least 20 tokens) most \
         over-represented among its tokens, by lift (its share of the route's tokens over its share of all tokens):\n"
    );
    for (e, expert_total) in totals.iter().enumerate() {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for result in [&summary.dev_seen, &summary.dev_unseen, &summary.shared_dev] {
            if let Some(map) = result.expert_routes.get(e) {
                for (route, n) in map {
                    *counts.entry(route.as_str()).or_insert(0) += n;
                }
            }
        }
        let share = *expert_total as f64 / all as f64;
        let mut lifts: Vec<(f64, &str)> = counts
            .iter()
            .filter_map(|(route, n)| {
                let total = *route_totals.get(route)?;
                (total >= 20 && share > 0.0).then(|| ((*n as f64 / total as f64) / share, *route))
            })
            .collect();
        lifts.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top: Vec<String> = lifts.iter().take(6).map(|(l, r)| format!("{r} ×{l:.1}")).collect();
        let _ = writeln!(out, "- e{e} ({:.1}% of tokens): {}", share * 100.0, top.join(", "));
    }
    let _ = writeln!(out);
}
