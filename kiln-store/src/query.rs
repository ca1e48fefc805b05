//! The query path: selector → series → rows (via [`crate::rollup::plan`]) → merged stacks
//! → [`Tree`] → flamebearer; timelines and group totals from the `totals` table; label
//! names and values from the in-memory index.

use std::collections::{BTreeMap, BTreeSet};

use redb::ReadableDatabase;

use crate::buckets::{self, MAX_TIME, NS};
use crate::codec::for_each_pair;
use crate::error::{Result, StoreError};
use crate::flamebearer::{self, DiffRender, Metadata, SingleRender, Timeline};
use crate::rollup::{self, plan};
use crate::schema;
use crate::selector::{parse_query, Matcher};
use crate::store::{read, Store};
use crate::tree::{Tree, TreeBuilder};

/// Most points a timeline may have; larger requests get a coarser step.
pub const MAX_TIMELINE_POINTS: i64 = 11_000;

/// A resolved query: one profile type (or none, for label queries) and matchers.
#[derive(Clone, Debug)]
pub struct Selection {
    pub profile_type: Option<u32>,
    pub type_id: String,
    pub matchers: Vec<Matcher>,
}

/// Options of [`Store::render`].
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub max_nodes: usize,
    /// Timeline step in seconds; 0 picks one with [`default_step`].
    pub step_secs: i64,
    /// Add a timeline per value of this label (`groups` in the response).
    pub group_by: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            max_nodes: 8192,
            step_secs: 0,
            group_by: None,
        }
    }
}

/// One side of a diff: query text and time range (unix ns, `[from, until)`).
#[derive(Clone, Debug)]
pub struct QueryRange<'a> {
    pub query: &'a str,
    pub from_nanos: i64,
    pub until_nanos: i64,
}

/// `/api/v1/group-totals` response.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupTotals {
    pub group_by: String,
    pub total: u64,
    pub groups: Vec<GroupTotal>,
}

#[derive(Clone, Debug, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupTotal {
    /// Label value; "" for series without the label.
    pub value: String,
    pub total: u64,
    pub timeline: Timeline,
}

/// The smallest "round" step (seconds, >= 10) giving at most ~1500 points over the range.
pub fn default_step(from_nanos: i64, until_nanos: i64) -> i64 {
    const STEPS: [i64; 16] = [
        10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800,
    ];
    let range = (until_nanos - from_nanos).max(0) / NS;
    STEPS
        .iter()
        .copied()
        .find(|s| range / s <= 1500)
        .unwrap_or(604800)
}

/// Units and sample rate the Pyroscope UI needs to label a profile type's values.
pub fn units_for(type_id: &str, period: i64) -> (String, u64) {
    let parts: Vec<&str> = type_id.split(':').collect();
    let ty = parts.get(1).copied().unwrap_or("");
    let unit = parts.get(2).copied().unwrap_or("");
    let period_unit = parts.get(4).copied().unwrap_or("");
    match unit {
        "nanoseconds" => ("samples".into(), 1_000_000_000),
        "microseconds" => ("samples".into(), 1_000_000),
        "milliseconds" => ("samples".into(), 1_000),
        "seconds" => ("samples".into(), 1),
        "bytes" => ("bytes".into(), 100),
        "count" if ty.contains("object") || ty.contains("alloc") || ty.contains("inuse") => {
            ("objects".into(), 100)
        }
        "count" if ty.contains("goroutine") => ("goroutines".into(), 100),
        "count" if ty.contains("lock") || ty.contains("contention") => ("lock_samples".into(), 100),
        _ => {
            let rate = if period_unit == "nanoseconds" && period > 0 {
                (1_000_000_000 / period).max(1) as u64
            } else {
                100
            };
            ("samples".into(), rate)
        }
    }
}

fn clamp(t: i64) -> i64 {
    t.clamp(0, MAX_TIME)
}

/// Longest time (ns) a raw row's value is spread over. A longer profile spreads over its
/// first 5 minutes (the finest rollup bucket), which bounds how far back a timeline reads.
pub const MAX_SPREAD_NANOS: i64 = 300 * NS;

/// How long (ns) after its window ends a profile may still be on its way to the store.
pub const ARRIVAL_GRACE_NANOS: i64 = 10 * NS;

/// How many of a timeline's `points` steps of `step` ns from `start` to return. Trailing
/// steps that end after the data read (`data_end`) and so recently that data may still
/// arrive for them (the window being profiled now, ending up to `pending` ns from now, a
/// push on its way) are left out: drawn, they would drop towards 0 at the right edge and
/// fill in later. Older steps without data stay, as zeros: the service stopped.
pub fn complete_points(
    start: i64,
    step: i64,
    points: usize,
    data_end: i64,
    now: i64,
    pending: i64,
) -> usize {
    let keep_until = data_end.max(now.saturating_sub(pending + ARRIVAL_GRACE_NANOS));
    if keep_until <= start {
        return 0;
    }
    (((keep_until - start) / step) as usize).min(points)
}

/// Adds `value`, spread evenly over `[t, t + duration)`, to the `points` buckets of `step`
/// ns from `start`, each in proportion to its overlap; parts outside the buckets are
/// dropped. The parts are differences of one rounded-down cumulative share, so a profile
/// inside the buckets adds exactly `value`. A duration of 0 is a point in time: all of
/// it goes to the bucket holding `t`. Durations are capped at [`MAX_SPREAD_NANOS`].
pub fn spread(
    start: i64,
    step: i64,
    points: usize,
    t: i64,
    duration: i64,
    value: u64,
    mut add: impl FnMut(usize, u64),
) {
    let end = start.saturating_add(step.saturating_mul(points as i64));
    let d = duration.clamp(0, MAX_SPREAD_NANOS);
    if d == 0 {
        if (start..end).contains(&t) {
            add(((t - start) / step) as usize, value);
        }
        return;
    }
    let (lo, hi) = (t.max(start), t.saturating_add(d).min(end));
    // Share of the value in `[t, x)`, rounded down; 128-bit only when 64 bits overflow.
    let share = |x: i64| {
        let (part, d) = ((x - t) as u64, d as u64);
        if part >= d {
            value
        } else if part == 0 {
            0
        } else {
            match value.checked_mul(part) {
                Some(p) => p / d,
                None => (u128::from(value) * u128::from(part) / u128::from(d)) as u64,
            }
        }
    };
    let mut i = ((lo - start) / step) as usize;
    let mut a = lo;
    let mut before = share(a);
    while a < hi {
        let b = (start + (i as i64 + 1) * step).min(hi);
        let upto = share(b);
        if upto > before {
            add(i, upto - before);
        }
        (a, before, i) = (b, upto, i + 1);
    }
}

impl Store {
    /// Profile type ids present, sorted.
    pub fn profile_types(&self) -> Vec<String> {
        let idx = read(&self.index);
        let mut v: Vec<String> = idx.types.iter().map(|t| t.id.clone()).collect();
        v.sort();
        v
    }

    /// Resolves query text: `<type id>{...}`, `{...}` (no type: only for label queries),
    /// or a legacy app name like `myapp.cpu` / `myapp` (matches `service_name="myapp"`
    /// and the profile type named by the suffix, CPU by default).
    pub fn resolve(&self, query: &str) -> Result<Selection> {
        let parsed = parse_query(query)?;
        let mut matchers = parsed.matchers;
        let name = parsed.name;
        let idx = read(&self.index);
        if name.is_empty() {
            return Ok(Selection {
                profile_type: None,
                type_id: String::new(),
                matchers,
            });
        }
        if name.contains(':') {
            let t = idx
                .type_id(&name)
                .ok_or_else(|| StoreError::UnknownProfileType(name.clone()))?;
            return Ok(Selection {
                profile_type: Some(t),
                type_id: name,
                matchers,
            });
        }
        // Legacy application name.
        let part = |id: &str, i: usize| id.split(':').nth(i).unwrap_or("").to_owned();
        let pick = |suffix: &str| -> Option<u32> {
            let mut best: Option<(u8, u32)> = None;
            for (i, t) in idx.types.iter().enumerate() {
                let (fam, ty) = (part(&t.id, 0), part(&t.id, 1));
                let score = if suffix == "cpu" {
                    match (fam.as_str(), ty.as_str()) {
                        ("process_cpu", "cpu") => 4,
                        (_, "cpu") => 3,
                        ("process_cpu", _) => 2,
                        _ => 0,
                    }
                } else if ty == suffix {
                    4
                } else if fam == suffix {
                    3
                } else {
                    0
                };
                if score > 0 && best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, i as u32));
                }
            }
            best.map(|b| b.1)
        };
        let (app, t) = match name.rsplit_once('.') {
            Some((app, suffix)) if pick(suffix).is_some() => (app.to_owned(), pick(suffix)),
            _ => (
                name.clone(),
                pick("cpu").or(if idx.types.is_empty() { None } else { Some(0) }),
            ),
        };
        let t = t.ok_or_else(|| StoreError::UnknownProfileType(name.clone()))?;
        matchers.push(Matcher::eq("service_name", &app));
        Ok(Selection {
            profile_type: Some(t),
            type_id: idx.types[t as usize].id.clone(),
            matchers,
        })
    }

    fn require_type(&self, query: &str) -> Result<(Selection, u32)> {
        let sel = self.resolve(query)?;
        match sel.profile_type {
            Some(t) => Ok((sel, t)),
            None => Err(StoreError::BadQuery(
                "the query needs a profile type, e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"app\"}".into(),
            )),
        }
    }

    fn check_range(from: i64, until: i64) -> Result<()> {
        if from > until {
            return Err(StoreError::BadQuery(format!(
                "from ({from} ns) is after until ({until} ns)"
            )));
        }
        Ok(())
    }

    /// Label names of series matching `query` with data in `[from, until)`, sorted.
    /// Includes sample-label names and `__name__`/`service_name`, as Pyroscope does.
    pub fn label_names(&self, query: &str, from: i64, until: i64) -> Result<Vec<String>> {
        Self::check_range(from, until)?;
        let sel = self.resolve(query)?;
        let idx = read(&self.index);
        let ids = idx.select_any(sel.profile_type, &sel.matchers, from, until);
        Ok(idx.label_names(&ids).into_iter().collect())
    }

    /// Values of label `name` among matching series, sorted.
    pub fn label_values(
        &self,
        name: &str,
        query: &str,
        from: i64,
        until: i64,
    ) -> Result<Vec<String>> {
        Self::check_range(from, until)?;
        let sel = self.resolve(query)?;
        let idx = read(&self.index);
        let ids = idx.select_any(sel.profile_type, &sel.matchers, from, until);
        let set: BTreeSet<String> = ids
            .iter()
            .filter_map(|&i| idx.series[i as usize].label(name).map(str::to_owned))
            .collect();
        Ok(set.into_iter().collect())
    }

    fn select(&self, sel: &Selection, t: u32, from: i64, until: i64) -> Vec<u32> {
        read(&self.index).select(t, &sel.matchers, from, until)
    }

    /// Sums every stack of `series` over `[from, until)`, calling `f(stack, value)` once
    /// per stack.
    fn merge_stacks(
        &self,
        series: &[u32],
        from: i64,
        until: i64,
        f: impl FnMut(u32, u64),
    ) -> Result<()> {
        self.merge_stacks_with(series, from, until, true, f)
    }

    fn merge_stacks_with(
        &self,
        series: &[u32],
        from: i64,
        until: i64,
        use_rollups: bool,
        mut f: impl FnMut(u32, u64),
    ) -> Result<()> {
        let (from, until) = (clamp(from), clamp(until));
        // Watermarks before the snapshot: an older watermark is always safe.
        let wms = if use_rollups {
            *read(&self.watermarks)
        } else {
            [0; 3]
        };
        let spans = plan(from, until, &wms);
        let db = self.db()?;
        let txn = db.begin_read()?;
        // Symbols after the snapshot, so every stack id in it is known.
        let n = read(&self.symbols).stack_count();
        let raw = txn.open_table(schema::RAW)?;
        let rollups = txn.open_table(schema::ROLLUPS)?;
        let mut acc = vec![0u64; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut add = |s: u32, v: u64| {
            if let Some(a) = acc.get_mut(s as usize) {
                if *a == 0 {
                    touched.push(s);
                }
                *a = a.saturating_add(v);
            }
        };
        let corrupt = |table| move |source| StoreError::Corrupt { table, source };
        for &s in series {
            for sp in &spans {
                if sp.level == 0 {
                    for row in raw.range((s, sp.lo)..(s, sp.hi))? {
                        let (_, v) = row?;
                        for_each_pair(v.value(), &mut add).map_err(corrupt("raw"))?;
                    }
                } else {
                    for row in rollups.range((sp.level, s, sp.lo)..(sp.level, s, sp.hi))? {
                        let (_, v) = row?;
                        for_each_pair(v.value(), &mut add).map_err(corrupt("rollups"))?;
                    }
                }
            }
        }
        for s in touched {
            f(s, acc[s as usize]);
        }
        Ok(())
    }

    /// Same as [`Store::tree`] but reading raw rows only (no rollups): the naive
    /// baseline the benchmark compares against.
    #[doc(hidden)]
    pub fn tree_without_rollups(&self, query: &str, from: i64, until: i64) -> Result<Tree> {
        let (sel, t) = self.require_type(query)?;
        let series = self.select(&sel, t, from, until);
        let mut pairs = Vec::new();
        self.merge_stacks_with(&series, from, until, false, |s, v| pairs.push((s, v)))?;
        let sym = read(&self.symbols);
        let mut tb = TreeBuilder::new(&sym);
        for (s, v) in pairs {
            tb.add(s, v, 0);
        }
        Ok(tb.build())
    }

    /// The merged call tree of `query` over `[from, until)` (unix ns).
    pub fn tree(&self, query: &str, from: i64, until: i64) -> Result<Tree> {
        Self::check_range(from, until)?;
        let (sel, t) = self.require_type(query)?;
        let series = self.select(&sel, t, from, until);
        let mut pairs = Vec::new();
        self.merge_stacks(&series, from, until, |s, v| pairs.push((s, v)))?;
        let sym = read(&self.symbols);
        let mut tb = TreeBuilder::new(&sym);
        for (s, v) in pairs {
            tb.add(s, v, 0);
        }
        Ok(tb.build())
    }

    /// How far before a timeline's range raw rows may start and still reach into it.
    fn lookback(&self) -> i64 {
        self.max_raw_duration
            .load(std::sync::atomic::Ordering::Relaxed)
            .clamp(0, MAX_SPREAD_NANOS)
    }

    /// Series with rows that may count in a timeline of `[from, until)` at `step_secs`:
    /// its buckets are wider than the range by up to a step, and rows that started up to
    /// [`Store::lookback`] before reach into them.
    fn timeline_series(
        &self,
        sel: &Selection,
        t: u32,
        from: i64,
        until: i64,
        step_secs: i64,
    ) -> Vec<u32> {
        let margin = step_secs.max(1).saturating_mul(NS);
        self.select(
            sel,
            t,
            from.saturating_sub(margin + self.lookback()),
            until.saturating_add(margin),
        )
    }

    /// Totals per step (seconds) over `[floor(from), ceil(until))` for `series`, plus
    /// the timeline of each group when `groups` maps series to group indices.
    ///
    /// A raw row's value is spread over the buckets its profile covers
    /// (`[start, start + duration)`, see [`spread`]), so a step finer than the profiles
    /// shows their rate instead of alternating full and empty buckets. Rollup buckets are
    /// read only when they fit whole in a step and go to the step holding them. Recent
    /// steps that data may still arrive for are left out ([`complete_points`]).
    fn totals(
        &self,
        series: &[u32],
        groups: &[usize],
        ngroups: usize,
        from: i64,
        until: i64,
        step_secs: i64,
    ) -> Result<(Timeline, Vec<Timeline>)> {
        let mut step = step_secs.max(1) * NS;
        let start = buckets::floor(clamp(from), step);
        let mut end = buckets::ceil(clamp(until), step).max(start + step);
        if (end - start) / step > MAX_TIMELINE_POINTS {
            step = buckets::ceil((end - start) / MAX_TIMELINE_POINTS, NS);
            end = start + buckets::ceil(end - start, step);
        }
        let points = ((end - start) / step) as usize;
        // Only levels whose buckets fit whole in a step, aligned to it.
        let mut wms = *read(&self.watermarks);
        for level in 1..=3u8 {
            let sz = buckets::size(level);
            if sz > step || step % sz != 0 || start % sz != 0 {
                wms[level as usize - 1] = 0;
            }
        }
        let mut spans = plan(start, end, &wms);
        // Raw rows that started before the range and reach into it (no rollup bucket
        // before `start` is read, so nothing counts twice).
        let lookback = self.lookback();
        if lookback > 0 {
            spans.push(rollup::Span {
                level: 0,
                lo: start - lookback,
                hi: start,
            });
        }
        let db = self.db()?;
        let txn = db.begin_read()?;
        let totals = txn.open_table(schema::TOTALS)?;
        let raw_totals = txn.open_table(schema::RAW_TOTALS)?;
        let mut all = vec![0u64; points];
        let mut per_group = vec![vec![0u64; points]; ngroups];
        // Where the raw rows read end (a point in time ends with its step).
        let mut data_end = i64::MIN;
        for (i, &s) in series.iter().enumerate() {
            let mut group = groups.get(i).map(|&g| &mut per_group[g]);
            let mut add = |p: usize, v: u64| {
                all[p] = all[p].saturating_add(v);
                if let Some(g) = group.as_mut() {
                    g[p] = g[p].saturating_add(v);
                }
            };
            for sp in &spans {
                if sp.level == 0 {
                    for row in raw_totals.range((s, sp.lo)..(s, sp.hi))? {
                        let (k, v) = row?;
                        let (value, duration) = v.value();
                        let t = k.value().1;
                        spread(start, step, points, t, duration, value, &mut add);
                        let end = match duration.clamp(0, MAX_SPREAD_NANOS) {
                            0 => buckets::floor(t - start, step) + step + start,
                            d => t + d,
                        };
                        data_end = data_end.max(end);
                    }
                } else {
                    for row in totals.range((sp.level, s, sp.lo)..(sp.level, s, sp.hi))? {
                        let (k, v) = row?;
                        let p = ((k.value().2 - start) / step) as usize;
                        if p < points {
                            add(p, v.value());
                        }
                    }
                }
            }
        }
        let keep = complete_points(
            start,
            step,
            points,
            data_end,
            crate::ingest::now_nanos(),
            lookback,
        );
        let tl = |mut samples: Vec<u64>| {
            samples.truncate(keep);
            Timeline {
                start_time: start / NS,
                samples,
                duration_delta: step / NS,
            }
        };
        Ok((tl(all), per_group.into_iter().map(tl).collect()))
    }

    /// Timeline of totals per `step_secs` (0: [`default_step`]).
    pub fn timeline(&self, query: &str, from: i64, until: i64, step_secs: i64) -> Result<Timeline> {
        Self::check_range(from, until)?;
        let (sel, t) = self.require_type(query)?;
        let step = if step_secs > 0 {
            step_secs
        } else {
            default_step(from, until)
        };
        let series = self.timeline_series(&sel, t, from, until, step);
        Ok(self.totals(&series, &[], 0, from, until, step)?.0)
    }

    /// Totals grouped by the value of label `group_by` ("" when absent), heaviest first.
    pub fn group_totals(
        &self,
        query: &str,
        from: i64,
        until: i64,
        group_by: &str,
        step_secs: i64,
    ) -> Result<GroupTotals> {
        Self::check_range(from, until)?;
        let (sel, t) = self.require_type(query)?;
        let step = if step_secs > 0 {
            step_secs
        } else {
            default_step(from, until)
        };
        let series = self.timeline_series(&sel, t, from, until, step);
        let (names, groups) = {
            let idx = read(&self.index);
            let mut names: Vec<String> = Vec::new();
            let mut ids: BTreeMap<String, usize> = BTreeMap::new();
            let groups: Vec<usize> = series
                .iter()
                .map(|&s| {
                    let v = idx.series[s as usize]
                        .label(group_by)
                        .unwrap_or("")
                        .to_owned();
                    let n = ids.len();
                    *ids.entry(v.clone()).or_insert_with(|| {
                        names.push(v);
                        n
                    })
                })
                .collect();
            (names, groups)
        };
        let (all, per) = self.totals(&series, &groups, names.len(), from, until, step)?;
        let mut out: Vec<GroupTotal> = names
            .into_iter()
            .zip(per)
            .map(|(value, timeline)| GroupTotal {
                value,
                total: timeline.samples.iter().sum(),
                timeline,
            })
            .collect();
        out.sort_by(|a, b| b.total.cmp(&a.total).then(a.value.cmp(&b.value)));
        Ok(GroupTotals {
            group_by: group_by.to_owned(),
            total: all.samples.iter().sum(),
            groups: out,
        })
    }

    fn metadata(&self, t: u32, series: &[u32], format: &'static str) -> Metadata {
        let idx = read(&self.index);
        let ty = &idx.types[t as usize];
        let (units, sample_rate) = units_for(&ty.id, ty.period);
        let spy = series
            .iter()
            .find_map(|&s| idx.series[s as usize].label("pyroscope_spy"))
            .unwrap_or("ebpf")
            .to_owned();
        let name = series
            .first()
            .and_then(|&s| idx.series[s as usize].label("service_name"))
            .unwrap_or("")
            .to_owned();
        Metadata {
            format,
            units,
            sample_rate,
            spy_name: spy,
            name,
        }
    }

    /// Flame graph (flamebearer), timeline and optional per-group timelines: the
    /// `/pyroscope/render` response.
    pub fn render(
        &self,
        query: &str,
        from: i64,
        until: i64,
        opts: &RenderOptions,
    ) -> Result<SingleRender> {
        Self::check_range(from, until)?;
        let (sel, t) = self.require_type(query)?;
        let series = self.select(&sel, t, from, until);
        let tree = {
            let mut pairs = Vec::new();
            self.merge_stacks(&series, from, until, |s, v| pairs.push((s, v)))?;
            let sym = read(&self.symbols);
            let mut tb = TreeBuilder::new(&sym);
            for (s, v) in pairs {
                tb.add(s, v, 0);
            }
            tb.build()
        };
        let step = if opts.step_secs > 0 {
            opts.step_secs
        } else {
            default_step(from, until)
        };
        let timeline_series = self.timeline_series(&sel, t, from, until, step);
        let timeline = self.totals(&timeline_series, &[], 0, from, until, step)?.0;
        let groups = match &opts.group_by {
            Some(g) => Some(
                self.group_totals(query, from, until, g, step)?
                    .groups
                    .into_iter()
                    .map(|g| (g.value, g.timeline))
                    .collect(),
            ),
            None => None,
        };
        Ok(SingleRender {
            version: 1,
            flamebearer: flamebearer::single(&tree, opts.max_nodes),
            metadata: self.metadata(t, &series, "single"),
            timeline,
            groups,
        })
    }

    /// Diff of two (query, range) pairs: the `/pyroscope/render-diff` response.
    pub fn render_diff(
        &self,
        left: &QueryRange<'_>,
        right: &QueryRange<'_>,
        max_nodes: usize,
    ) -> Result<DiffRender> {
        let mut tree_pairs: [Vec<(u32, u64)>; 2] = [Vec::new(), Vec::new()];
        let mut meta = None;
        let mut timelines = Vec::new();
        for (side, q) in [left, right].into_iter().enumerate() {
            Self::check_range(q.from_nanos, q.until_nanos)?;
            let (sel, t) = self.require_type(q.query)?;
            let series = self.select(&sel, t, q.from_nanos, q.until_nanos);
            let pairs = &mut tree_pairs[side];
            self.merge_stacks(&series, q.from_nanos, q.until_nanos, |s, v| {
                pairs.push((s, v))
            })?;
            if meta.is_none() {
                meta = Some(self.metadata(t, &series, "double"));
            }
            let step = default_step(q.from_nanos, q.until_nanos);
            let timeline_series = self.timeline_series(&sel, t, q.from_nanos, q.until_nanos, step);
            timelines.push(
                self.totals(&timeline_series, &[], 0, q.from_nanos, q.until_nanos, step)?
                    .0,
            );
        }
        let tree = {
            let sym = read(&self.symbols);
            let mut tb = TreeBuilder::new(&sym);
            for (side, pairs) in tree_pairs.iter().enumerate() {
                for &(s, v) in pairs {
                    tb.add(s, v, side);
                }
            }
            tb.build()
        };
        let right_timeline = timelines.pop().unwrap_or_default();
        let left_timeline = timelines.pop().unwrap_or_default();
        Ok(DiffRender {
            version: 1,
            flamebearer: flamebearer::diff(&tree, max_nodes),
            metadata: meta.expect("two sides"),
            left_ticks: tree.total(0),
            right_ticks: tree.total(1),
            timeline: left_timeline.clone(),
            left_timeline,
            right_timeline,
        })
    }

    /// Merged stacks of `query` as a pprof profile (one sample type: the query's).
    pub fn export_pprof(
        &self,
        query: &str,
        from: i64,
        until: i64,
    ) -> Result<kiln_proto::pprof::Profile> {
        Self::check_range(from, until)?;
        let (sel, t) = self.require_type(query)?;
        let series = self.select(&sel, t, from, until);
        let mut pairs = Vec::new();
        self.merge_stacks(&series, from, until, |s, v| pairs.push((s, v)))?;
        pairs.sort_unstable();
        let ty = read(&self.index).types[t as usize].clone();
        let sym = read(&self.symbols);
        Ok(crate::export::pprof(&sym, &ty, &pairs, from, until))
    }

    /// Merged stacks of `query` as folded text (`root;...;leaf value` lines).
    pub fn export_folded(&self, query: &str, from: i64, until: i64) -> Result<String> {
        Ok(self.tree(query, from, until)?.folded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spread` into 4 buckets of 10 s from t=100 s.
    fn spread4(t_secs: i64, duration_secs: i64, value: u64) -> Vec<u64> {
        let mut out = vec![0u64; 4];
        spread(
            100 * NS,
            10 * NS,
            4,
            t_secs * NS,
            duration_secs * NS,
            value,
            |i, v| out[i] += v,
        );
        out
    }

    #[test]
    fn spread_aligned_straddling_and_long_profiles() {
        // Exactly one bucket.
        assert_eq!(spread4(110, 10, 90), vec![0, 90, 0, 0]);
        // Straddling two buckets: 10 s in one, 5 s in the next.
        assert_eq!(spread4(100, 15, 90), vec![60, 30, 0, 0]);
        assert_eq!(spread4(115, 15, 90), vec![0, 30, 60, 0]);
        // Longer than a bucket: 25 s from 105 s covers 5 + 10 + 10 s.
        assert_eq!(spread4(105, 25, 100), vec![20, 40, 40, 0]);
        // A point in time (no duration) lands in the bucket holding it.
        assert_eq!(spread4(129, 0, 7), vec![0, 0, 7, 0]);
        // Parts outside the buckets are dropped: 5 s before, 5 s after.
        assert_eq!(spread4(95, 10, 10), vec![5, 0, 0, 0]);
        assert_eq!(spread4(135, 10, 10), vec![0, 0, 0, 5]);
        assert_eq!(spread4(140, 10, 10), vec![0; 4]);
        assert_eq!(spread4(80, 10, 10), vec![0; 4]);
        // Longer than MAX_SPREAD_NANOS: spread over its first 5 minutes only.
        let mut out = vec![0u64; 40];
        spread(0, 10 * NS, 40, 0, 3600 * NS, 300, |i, v| out[i] += v);
        assert_eq!(&out[..30], &[10; 30]);
        assert_eq!(&out[30..], &[0; 10]);
    }

    #[test]
    fn recent_steps_without_data_yet_are_left_out() {
        let now = 1000 * NS;
        // 10 s steps from 900 s; 15 s profiles, the last one ended at 994 s.
        let keep = |data_end| complete_points(900 * NS, 10 * NS, 11, data_end, now, 15 * NS);
        // Steps up to 990 s are whole; 990..1000 holds 4 s of data, more is on its way.
        assert_eq!(keep(994 * NS), 9);
        // Data ended at 950 s: the steps after it hold zeros (it stopped), except those
        // that end within the last 15 + 10 s (still pending).
        assert_eq!(keep(950 * NS), 7);
        // No data at all, or a range in the past: as before.
        assert_eq!(keep(i64::MIN), 7);
        assert_eq!(complete_points(0, 10 * NS, 6, i64::MIN, now, 15 * NS), 6);
        // A range that ends in the future stops at the data's end.
        assert_eq!(
            complete_points(990 * NS, 10 * NS, 100, 1000 * NS, now, 0),
            1
        );
        assert_eq!(complete_points(990 * NS, 10 * NS, 100, i64::MIN, now, 0), 0);
    }

    #[test]
    fn spread_preserves_totals_with_rounding() {
        // Odd values and durations over many offsets: the parts always sum to the value
        // of a profile inside the buckets, and no part is more than one off its share.
        for value in [1u64, 7, 999, 1_000_000_007, u64::MAX / 3] {
            for (t, d) in [(1, 3), (3, 17), (7, 29), (11, 13), (2, 38)] {
                let mut out = vec![0u64; 5];
                spread(0, 10 * NS, 5, t * NS, d * NS, value, |i, v| out[i] += v);
                assert_eq!(out.iter().sum::<u64>(), value, "value {value} t {t} d {d}");
                for (i, &o) in out.iter().enumerate() {
                    let (lo, hi) = ((i as i64 * 10).max(t), ((i as i64 + 1) * 10).min(t + d));
                    let exact = value as f64 * (hi - lo).max(0) as f64 / d as f64;
                    assert!((o as f64 - exact).abs() <= 1.0 + exact * 1e-12, "{out:?}");
                }
            }
        }
    }

    #[test]
    fn steps_and_units() {
        assert_eq!(default_step(0, 3600 * NS), 10);
        assert_eq!(default_step(0, 86400 * NS), 60);
        assert_eq!(default_step(0, 7 * 86400 * NS), 600);
        assert_eq!(
            units_for("process_cpu:cpu:nanoseconds:cpu:nanoseconds", 10_000_000),
            ("samples".to_owned(), 1_000_000_000)
        );
        assert_eq!(
            units_for("process_cpu:samples:count:cpu:nanoseconds", 10_000_000),
            ("samples".to_owned(), 100)
        );
        assert_eq!(
            units_for("memory:inuse_space:bytes:space:bytes", 0).0,
            "bytes"
        );
    }
}
