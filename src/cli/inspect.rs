//! `astrolabe inspect`: load a source into a graph once and print all of it, a filtered part, or
//! the neighbourhood of one object.

use std::io::Write;

use clap::{Args, ValueEnum};

use super::Failure;
use crate::graph::{Direction3, Filter, Graph, NodeIndex};
use crate::ingest;
use crate::model::{Atom, Kind, Selector};
use crate::relations::Projector;
use crate::sources::{self, SourceSpec};
use crate::view::{self, SubgraphView};

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A manifest file or directory, a `kubectl get -o json|yaml` dump, or `demo[:N]`.
    pub source: String,
    /// Only these kinds (repeatable or comma-separated; kubectl names such as `deploy`,
    /// `deployments` or `Deployment.apps` work).
    #[arg(long = "kind", short = 'k', value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Only these namespaces (repeatable or comma-separated; "" for cluster-scoped objects).
    #[arg(long = "namespace", short = 'n', value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Only objects whose labels match (kubectl syntax: `a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
    /// `a`, `!a`).
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// Show the neighbourhood of one object: `KIND/NAMESPACE/NAME`, or `KIND/NAME` when
    /// cluster-scoped.
    #[arg(long)]
    pub neighbors: Option<String>,
    /// Hops from the object given to --neighbors.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub depth: u32,
    /// Which edges --neighbors follows.
    #[arg(long, value_enum, default_value_t = DirectionArg::Both)]
    pub direction: DirectionArg,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Keep this annotation too (repeatable; `prefix*` keeps every annotation with the prefix).
    #[arg(long = "allow-annotation")]
    pub allow_annotations: Vec<String>,
}

/// Traversal direction.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    /// What the object uses, owns, selects.
    Out,
    /// What uses, owns, selects the object.
    In,
    /// Both.
    Both,
}

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// An aligned text table.
    Table,
    /// `{"nodes": [...], "edges": [...]}`.
    Json,
    /// Graphviz DOT.
    Dot,
}

/// Nodes per traversal before the result is cut short.
const NEIGHBOR_CAP: usize = 100_000;

pub(super) fn run(args: &InspectArgs, out: &mut dyn Write) -> Result<(), Failure> {
    // Validate everything that does not need the graph before loading it.
    let spec = SourceSpec::parse(&args.source).map_err(Failure::usage)?;
    let selector = args
        .selector
        .as_deref()
        .map(Selector::parse)
        .transpose()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let target = args.neighbors.as_deref().map(parse_target).transpose()?;

    let projector = Projector::new(&args.allow_annotations);
    let (handle, tx, writer) = ingest::start();
    let now = now_unix();
    let report = sources::load(&spec, &projector, &tx, now);
    drop(tx);
    writer.join();
    let report = report.map_err(|e| Failure::runtime(e.to_string()))?;
    if report.skipped > 0 {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("warning: skipped {} malformed document(s):", report.skipped);
            for e in report.errors.iter().take(20) {
                eprintln!("  {e}");
            }
            if report.skipped > 20 {
                eprintln!("  ... and {} more", report.skipped - 20);
            }
        }
    }
    let graph = handle.read();

    let kinds = args
        .kinds
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| {
            Kind::parse_user(k, graph.kinds())
                .ok_or_else(|| Failure::usage(format!("unknown kind {k:?}")))
        })
        .collect::<Result<Vec<Kind>, Failure>>()?;
    let filter = Filter {
        kinds,
        namespaces: args.namespaces.iter().map(|n| Atom::new(n)).collect(),
        selector,
        include_releases: true,
        ..Filter::default()
    };

    let (nodes, edges, depths) = match target {
        None => {
            let nodes: Vec<NodeIndex> = graph.select(&filter).collect();
            let edges = graph.induced_edges(&nodes, |_| true);
            (nodes, edges, None)
        }
        Some((kind_name, ns, name)) => {
            let kind = Kind::parse_user(&kind_name, graph.kinds()).ok_or_else(|| {
                Failure::usage(format!("unknown kind {kind_name:?} in --neighbors"))
            })?;
            let start = graph
                .find_key(&kind, &Atom::new(&ns), &name)
                .ok_or_else(|| {
                    Failure::runtime(format!(
                        "no {} named {}",
                        kind.name(),
                        if ns.is_empty() {
                            name.clone()
                        } else {
                            format!("{ns}/{name}")
                        }
                    ))
                })?;
            let dir = match args.direction {
                DirectionArg::Out => Direction3::Out,
                DirectionArg::In => Direction3::In,
                DirectionArg::Both => Direction3::Both,
            };
            let sub = graph.neighborhood(start, args.depth, dir, &[], NEIGHBOR_CAP);
            if sub.truncated {
                tracing::warn!("the neighbourhood was cut at {NEIGHBOR_CAP} objects");
            }
            let filtered = filter_nodes(&graph, sub.nodes, start, &filter);
            let edges = graph.induced_edges(&filtered, |_| true);
            (filtered, edges, Some(sub.depth))
        }
    };

    let text = match args.output {
        Output::Json => {
            let mut s = serde_json::to_string_pretty(&SubgraphView {
                graph: &graph,
                nodes: &nodes,
                edges: &edges,
            })
            .map_err(|e| Failure::runtime(e.to_string()))?;
            s.push('\n');
            s
        }
        Output::Dot => view::dot(&graph, &nodes, &edges),
        Output::Table => {
            let depth_of = depths
                .as_ref()
                .map(|d| move |n: NodeIndex| d.get(&n).copied().unwrap_or(0));
            let depth_fn: Option<&dyn Fn(NodeIndex) -> u32> =
                depth_of.as_ref().map(|f| f as &dyn Fn(NodeIndex) -> u32);
            let mut t = view::table(&graph, &nodes, depth_fn, now);
            if depths.is_some() && !edges.is_empty() {
                t.push_str("\nEDGES\n");
                for &(a, b, ty) in &edges {
                    t.push_str(&format!(
                        "{} --{}--> {}\n",
                        graph.object(a).key(),
                        ty,
                        graph.object(b).key()
                    ));
                }
            }
            t.push_str(&summary(&graph, nodes.len(), edges.len(), report.skipped));
            t
        }
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Failure::runtime(format!("writing the output: {e}")))
}

/// Keeps the nodes the filter accepts, always keeping the start.
fn filter_nodes(
    graph: &Graph,
    nodes: Vec<NodeIndex>,
    start: NodeIndex,
    filter: &Filter,
) -> Vec<NodeIndex> {
    let kinds_ok =
        |n: NodeIndex| filter.kinds.is_empty() || filter.kinds.contains(&graph.object(n).kind);
    let ns_ok = |n: NodeIndex| {
        filter.namespaces.is_empty() || filter.namespaces.contains(&graph.object(n).namespace)
    };
    let sel_ok = |n: NodeIndex| {
        filter
            .selector
            .as_ref()
            .is_none_or(|s| s.matches(&graph.object(n).labels))
    };
    nodes
        .into_iter()
        .filter(|&n| n == start || (kinds_ok(n) && ns_ok(n) && sel_ok(n)))
        .collect()
}

fn summary(graph: &Graph, shown: usize, edges: usize, skipped: usize) -> String {
    let mut s = format!(
        "\n{shown} object(s) and {edges} edge(s) shown; the graph holds {} object(s) and {} edge(s)",
        graph.node_count(),
        graph.edge_count()
    );
    if skipped > 0 {
        s.push_str(&format!("; {skipped} malformed document(s) skipped"));
    }
    s.push('\n');
    s
}

/// `KIND/NAMESPACE/NAME` or `KIND/NAME`.
fn parse_target(s: &str) -> Result<(String, String, String), Failure> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [kind, name] if !kind.is_empty() && !name.is_empty() => {
            Ok((kind.to_string(), String::new(), name.to_string()))
        }
        [kind, ns, name] if !kind.is_empty() && !ns.is_empty() && !name.is_empty() => {
            Ok((kind.to_string(), ns.to_string(), name.to_string()))
        }
        _ => Err(Failure::usage(format!(
            "invalid --neighbors {s:?}: expected KIND/NAMESPACE/NAME, or KIND/NAME for a cluster-scoped object"
        ))),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
