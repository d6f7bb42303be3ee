//! `vigil detect` next to rsigma 0.23.0, side by side: the same SigmaHQ `rules/`, the same
//! events, logsource routing on both, each process pinned to one core, in one run.
//!
//! Two lanes, each an NDJSON file of generated events written to a temporary directory:
//! CloudTrail records (about 1.3 KB) run as `vigil detect --logsource
//! product=aws,service=cloudtrail` and `rsigma engine eval --logsource-routing
//! --event-logsource product=aws,service=cloudtrail`, and Kubernetes audit events (0.8 to
//! 0.9 KB) likewise with `product=kubernetes,service=audit,category=application`, the
//! logsource Vigil's ingest gives them. The events are the demo records with their values
//! varied (ids, users, addresses, regions, accounts, namespaces, resource names, times, and for
//! read-only calls the API called), so no two are alike. Neither tool is given a field-mapping
//! pipeline: Vigil's `pipelines/` are in its own format, and without them both tools see the
//! records' own field paths, so they do the same work and should report the same number of
//! matches; the bench prints both counts and says when they differ.
//!
//! Rounds alternate which tool goes first, so that the load of other work on this shared
//! machine hits both alike. In each round each tool also runs over a one-event file of the same
//! lane: that is its rule loading, and the events/s reported are net of it (of the shortest
//! loading time over the rounds). The ratio is taken
//! per round and reported as the median with its range. Time is wall time on the pinned core
//! (`taskset`); the processes' CPU time is printed next to it, with the kernel's part of it
//! (system time), as a check on how much the machine's neighbours got in the way. Beside them,
//! a `serde_json::Value` parse of the same lines in this process (one thread, not pinned) is
//! the floor any JSON consumer pays; `detect_throughput` measures parse + detect against parse
//! alone inside one process.
//!
//! The goal (issue 20) is at least 10x rsigma on both lanes.
//!
//! Run with `cargo bench --bench detect_vs_rsigma`. rsigma is found from `RSIGMA`, else on
//! `PATH`, else in `~/.cargo/bin`; without it the bench says how to install it and stops. The
//! corpus comes from `VIGIL_SIGMA_CORPUS`, else `../shared/corpus/sigma/rules` beside the
//! checkout. `VIGIL_BENCH_EVENTS` (per lane, default 300000: at 100000 Vigil's run over the
//! events took little longer than its rule loading, whose noise then decided the net figures),
//! `VIGIL_BENCH_ROUNDS` (default 3), `VIGIL_BENCH_CORE` (default the last core) and `VIGIL_BIN`
//! (default the `vigil` binary Cargo builds for this bench) change the run; `VIGIL_BENCH_DIR`
//! keeps the event files there.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

mod support;
use support::records::{cloudtrail_events, kubernetes_events};
use support::{corpus_dir, env_usize, Rng};

const RSIGMA_VERSION: &str = "0.23.0";

fn executable(path: &Path) -> bool {
    path.is_file()
}

/// `RSIGMA`, else `rsigma` on `PATH`, else `~/.cargo/bin/rsigma` (or `$CARGO_HOME/bin`).
fn find_rsigma() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RSIGMA") {
        let path = PathBuf::from(path);
        return executable(&path).then_some(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|home| home.join("bin")))
        .map(|dir| dir.join("rsigma"))
        .find(|path| executable(path))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|path| executable(path))
}

/// `taskset -c CORE` if it is there and works here (a container may forbid it).
fn pinning(core: usize) -> Option<PathBuf> {
    let taskset = find_on_path("taskset")?;
    let works = Command::new(&taskset)
        .args(["-c", &core.to_string(), "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    works.then_some(taskset)
}

/// CPU seconds of this process's waited-for children, in the kernel's 10 ms ticks. `None`
/// off Linux.
fn children_cpu() -> Option<Cpu> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // cutime and cstime are fields 16 and 17 of the line, 14 and 15 after the name.
    let seconds = |at: usize| Some(fields.get(at)?.parse::<u64>().ok()? as f64 / 100.0);
    Some(Cpu {
        user: seconds(13)?,
        system: seconds(14)?,
    })
}

/// CPU seconds, the process's own and the kernel's on its behalf. On these machines the
/// kernel's share (reading the input, faulting in memory) moves from run to run with the host
/// by more than the difference between builds, so each run shows it.
#[derive(Clone, Copy)]
struct Cpu {
    user: f64,
    system: f64,
}

impl Cpu {
    fn total(self) -> f64 {
        self.user + self.system
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            user: self.user - before.user,
            system: self.system - before.system,
        }
    }

    /// `0.61 (system 0.08)`, or `-` where it is not known.
    fn describe(cpu: Option<Cpu>) -> String {
        cpu.map_or("-".into(), |cpu| {
            format!("{:.2} (system {:.2})", cpu.total(), cpu.system)
        })
    }
}

// ---- the runs ----

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Vigil,
    Rsigma,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Vigil => "vigil",
            Tool::Rsigma => "rsigma",
        }
    }
}

struct Lane {
    name: &'static str,
    logsource: &'static str,
    goal: f64,
    lines: Vec<String>,
    all: PathBuf,
    one: PathBuf,
}

struct Setup {
    vigil: PathBuf,
    rsigma: PathBuf,
    rules: PathBuf,
    taskset: Option<PathBuf>,
    core: usize,
    out: PathBuf,
}

struct Run {
    wall: f64,
    cpu: Option<Cpu>,
    matches: usize,
}

fn run(setup: &Setup, tool: Tool, lane: &Lane, input: &Path) -> Run {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let program = match tool {
        Tool::Vigil => {
            args.extend([
                "detect".into(),
                "--rules".into(),
                setup.rules.clone().into(),
            ]);
            args.extend(["--logsource".into(), lane.logsource.into()]);
            args.push(input.into());
            &setup.vigil
        }
        Tool::Rsigma => {
            args.extend(["--output-format".into(), "ndjson".into()]);
            args.extend(["engine".into(), "eval".into(), "--rules".into()]);
            args.push(setup.rules.clone().into());
            args.extend(["--logsource-routing".into(), "--event-logsource".into()]);
            args.push(lane.logsource.into());
            let mut event = std::ffi::OsString::from("@");
            event.push(input);
            args.extend(["--event".into(), event]);
            &setup.rsigma
        }
    };
    let mut command = match &setup.taskset {
        Some(taskset) => {
            let mut command = Command::new(taskset);
            command.args(["-c", &setup.core.to_string()]).arg(program);
            command
        }
        None => Command::new(program),
    };
    let stdout = std::fs::File::create(&setup.out).unwrap();
    command.args(&args).stdout(stdout).stderr(Stdio::piped());
    let cpu_before = children_cpu();
    let start = Instant::now();
    let output = command.output().expect("start the detector");
    let wall = start.elapsed().as_secs_f64();
    let cpu = children_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.since(before));
    assert!(
        output.status.success(),
        "{} failed ({}): {}",
        tool.name(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Both print one NDJSON line per match.
    let matches = BufReader::new(std::fs::File::open(&setup.out).unwrap())
        .lines()
        .map_while(Result::ok)
        .filter(|line| !line.trim().is_empty())
        .count();
    Run { wall, cpu, matches }
}

/// One round of one tool on one lane: its run over one event (loading the rules), then over
/// all of them.
struct Round {
    load: Run,
    all: Run,
}

fn measure(setup: &Setup, tool: Tool, lane: &Lane) -> Round {
    let load = run(setup, tool, lane, &lane.one);
    let all = run(setup, tool, lane, &lane.all);
    Round { load, all }
}

/// Events/s of each round net of loading, by wall time and by CPU time. Loading is the same
/// work every time, so the least disturbed of its runs (the shortest) is taken off each round,
/// rather than the round's own: one slow load would otherwise swing that round's figure, and
/// taking off the shortest never flatters a tool.
fn net_rates(events: usize, rounds: &[Round]) -> (Vec<f64>, Option<Vec<f64>>) {
    let load_wall = least(rounds.iter().map(|r| r.load.wall));
    let walls = rounds
        .iter()
        .map(|r| events as f64 / (r.all.wall - load_wall).max(1e-3))
        .collect();
    let load_cpu: Option<Vec<f64>> = rounds.iter().map(|r| Some(r.load.cpu?.total())).collect();
    let cpus = load_cpu.map(least).and_then(|load_cpu| {
        rounds
            .iter()
            .map(|r| Some(events as f64 / (r.all.cpu?.total() - load_cpu).max(1e-3)))
            .collect()
    });
    (walls, cpus)
}

/// `serde_json::Value` parses of the lane's lines, in this process: events/s.
fn parse_only(lines: &[String]) -> f64 {
    let start = Instant::now();
    for line in lines {
        black_box(serde_json::from_str::<Value>(line).unwrap());
    }
    lines.len() as f64 / start.elapsed().as_secs_f64()
}

fn least(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(f64::INFINITY, f64::min)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn range(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    file.flush().unwrap();
}

fn main() {
    let Some(rsigma) = find_rsigma() else {
        println!(
            "detect_vs_rsigma: skipped: rsigma not found (RSIGMA, PATH, ~/.cargo/bin). Install \
             it with `cargo install --locked rsigma --version {RSIGMA_VERSION}` (about 9 \
             minutes) or point RSIGMA at it."
        );
        return;
    };
    let version = Command::new(&rsigma)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    if !version.contains(RSIGMA_VERSION) {
        println!(
            "warning: {} reports {version:?}; the figures in benches/RESULTS.md are against \
             {RSIGMA_VERSION}",
            rsigma.display()
        );
    }
    let rules = corpus_dir();
    if !rules.is_dir() {
        println!(
            "detect_vs_rsigma: skipped: no Sigma corpus at {} (set VIGIL_SIGMA_CORPUS to \
             SigmaHQ's rules/)",
            rules.display()
        );
        return;
    }
    let vigil = std::env::var_os("VIGIL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vigil")));
    assert!(vigil.is_file(), "no vigil binary at {}", vigil.display());

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let core = env_usize("VIGIL_BENCH_CORE", cores - 1);
    let taskset = pinning(core);
    let events = env_usize("VIGIL_BENCH_EVENTS", 300_000).max(1);
    let rounds = env_usize("VIGIL_BENCH_ROUNDS", 3).max(1);

    // The event files stay in `VIGIL_BENCH_DIR` when it is set, to rerun either tool by hand.
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("VIGIL_BENCH_DIR").map(PathBuf::from);
    if let Some(kept) = &kept {
        std::fs::create_dir_all(kept).unwrap();
    }
    let dir = kept.as_deref().unwrap_or(temp.path());
    let mut rng = Rng(0x0d37_ec75_5160_0020);
    let mut lanes = vec![
        Lane {
            name: "CloudTrail",
            logsource: "product=aws,service=cloudtrail",
            goal: 280_000.0,
            lines: cloudtrail_events(events, &mut rng),
            all: dir.join("cloudtrail.ndjson"),
            one: dir.join("cloudtrail-one.ndjson"),
        },
        Lane {
            name: "Kubernetes audit",
            // As Vigil's ingest labels these events (`SourceSpec::kubernetes_audit`): half of
            // SigmaHQ's Kubernetes rules name the category, and routing needs it to run them.
            logsource: "product=kubernetes,service=audit,category=application",
            goal: 350_000.0,
            lines: kubernetes_events(events, &mut rng),
            all: dir.join("kubernetes.ndjson"),
            one: dir.join("kubernetes-one.ndjson"),
        },
    ];
    for lane in &mut lanes {
        write_lines(&lane.all, &lane.lines);
        write_lines(&lane.one, &lane.lines[..1]);
    }
    let setup = Setup {
        vigil,
        rsigma,
        rules,
        taskset,
        core,
        out: dir.join("matches.ndjson"),
    };
    println!(
        "rules {}; vigil {}; {} ({version}); {rounds} rounds, {}",
        setup.rules.display(),
        setup.vigil.display(),
        setup.rsigma.display(),
        match &setup.taskset {
            Some(_) => format!("each process pinned to core {core} of {cores} (taskset)"),
            None => format!("NOT pinned (no working taskset), {cores} cores"),
        }
    );

    // rounds[lane][tool]
    let mut runs: Vec<[Vec<Round>; 2]> = lanes.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let mut parses: Vec<Vec<f64>> = lanes.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Tool::Vigil, Tool::Rsigma]
        } else {
            [Tool::Rsigma, Tool::Vigil]
        };
        for (index, lane) in lanes.iter().enumerate() {
            for tool in order {
                let times = measure(&setup, tool, lane);
                println!(
                    "  round {} {:<16} {:<6} {:.2} s for all, {:.2} s for one event (CPU {} and {} s), {} matches",
                    round + 1,
                    lane.name,
                    tool.name(),
                    times.all.wall,
                    times.load.wall,
                    Cpu::describe(times.all.cpu),
                    Cpu::describe(times.load.cpu),
                    times.all.matches
                );
                runs[index][tool as usize].push(times);
            }
            parses[index].push(parse_only(&lane.lines));
        }
    }

    println!();
    for (index, lane) in lanes.iter().enumerate() {
        let [ours, theirs] = &runs[index];
        let events = lane.lines.len();
        let bytes: usize = lane.lines.iter().map(String::len).sum();
        println!(
            "{} ({}): {events} events, {:.2} KB on average",
            lane.name,
            lane.logsource,
            bytes as f64 / events as f64 / 1000.0
        );
        let (vigil_walls, vigil_cpus) = net_rates(events, ours);
        let (rsigma_walls, rsigma_cpus) = net_rates(events, theirs);
        let short = [ours, theirs]
            .iter()
            .flat_map(|rounds| rounds.iter())
            .any(|round| round.all.wall < 1.5 * round.load.wall);
        if short {
            println!(
                "  warning: loading the rules takes most of a run here, so the net figures are \
                 mostly noise; raise VIGIL_BENCH_EVENTS"
            );
        }
        for (tool, rounds, walls) in [
            (Tool::Vigil, ours, &vigil_walls),
            (Tool::Rsigma, theirs, &rsigma_walls),
        ] {
            let (low, high) = range(walls);
            let loads = rounds.iter().map(|round| round.load.wall);
            println!(
                "  {:<6} {:>9.0} events/s ({low:.0} to {high:.0}), loading {:.2} s",
                tool.name(),
                median(walls),
                least(loads)
            );
        }
        let ratios: Vec<f64> = vigil_walls
            .iter()
            .zip(&rsigma_walls)
            .map(|(ours, theirs)| ours / theirs)
            .collect();
        let (low, high) = range(&ratios);
        println!(
            "  vigil / rsigma: {:.2}x ({low:.2} to {high:.2} over {rounds} rounds); goal 10x: \
             {:.0} events/s against rsigma here (the issue's figure: about {:.0}k)",
            median(&ratios),
            10.0 * median(&rsigma_walls),
            lane.goal / 1000.0
        );
        if let (Some(ours), Some(theirs)) = (vigil_cpus, rsigma_cpus) {
            let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(o, t)| o / t).collect();
            let (low, high) = range(&ratios);
            println!(
                "  by CPU time: vigil {:.0}, rsigma {:.0} events/s, {:.2}x ({low:.2} to {high:.2})",
                median(&ours),
                median(&theirs),
                median(&ratios)
            );
        }
        let vigil_matches: Vec<usize> = ours.iter().map(|round| round.all.matches).collect();
        let rsigma_matches: Vec<usize> = theirs.iter().map(|round| round.all.matches).collect();
        if vigil_matches == rsigma_matches && vigil_matches.windows(2).all(|w| w[0] == w[1]) {
            println!("  matches: {} from each (the same work)", vigil_matches[0]);
        } else {
            println!(
                "  matches DIFFER: vigil {vigil_matches:?}, rsigma {rsigma_matches:?} (per round)"
            );
        }
        let parse = median(&parses[index]);
        println!(
            "  serde_json::Value parse alone, this process: {parse:.0} events/s; vigil detect \
             / parse: {:.2}",
            median(&vigil_walls) / parse
        );
    }
}
