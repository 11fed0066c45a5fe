//! containerd's native API, for when the CRI is not served: containers in namespace
//! `k8s.io` carry kubelet's labels; the sandbox is the container labelled
//! `io.cri-containerd.kind=sandbox`; the task service gives the PID.

use crate::select::{self, Sandbox};
use crate::{Client, Error, PodInfo, PodRef, Target};
use containerd_client::services::v1 as svc;
use containerd_client::types::v1::Status;
use std::net::IpAddr;
use std::path::PathBuf;

/// The containerd namespace kubelet's pods live in.
const K8S_NAMESPACE: &str = "k8s.io";
const POD_NAME: &str = "io.kubernetes.pod.name";
const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const CONTAINER_NAME: &str = "io.kubernetes.container.name";
const KIND: &str = "io.cri-containerd.kind";
/// Where the CRI plugin keeps its sandbox metadata (JSON with `NetNSPath`, `IP`).
const SANDBOX_METADATA: &str = "io.cri-containerd.sandbox.metadata";

fn req<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(K8S_NAMESPACE),
    );
    r
}

pub(crate) fn version(c: &Client) -> Result<(), Error> {
    let mut v = svc::version_client::VersionClient::new(c.channel.clone());
    c.call("containerd Version", v.version(())).map(|_| ())
}

fn containers(c: &Client, filter: String) -> Result<Vec<svc::Container>, Error> {
    let mut cc = svc::containers_client::ContainersClient::new(c.channel.clone());
    Ok(c.call(
        "containerd Containers.List",
        cc.list(req(svc::ListContainersRequest {
            filters: vec![filter],
        })),
    )?
    .containers)
}

/// The running task's PID, or `None` when there is no task or it is not running.
fn task_pid(c: &Client, id: &str) -> Result<Option<u32>, Error> {
    let mut tc = svc::tasks_client::TasksClient::new(c.channel.clone());
    match c.call(
        "containerd Tasks.Get",
        tc.get(req(svc::GetRequest {
            container_id: id.into(),
            exec_id: String::new(),
        })),
    ) {
        Ok(r) => Ok(r
            .process
            .filter(|p| p.status == Status::Running as i32 && p.pid > 0)
            .map(|p| p.pid)),
        Err(Error::Rpc { status, .. }) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn label<'a>(k: &'a svc::Container, key: &str) -> &'a str {
    k.labels.get(key).map(String::as_str).unwrap_or_default()
}

fn created_ns(k: &svc::Container) -> i64 {
    k.created_at
        .as_ref()
        .map(|t| {
            t.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.nanos))
        })
        .unwrap_or(0)
}

/// Sandbox containers with their task PID (readiness = a running task).
fn sandboxes(c: &Client) -> Result<Vec<(Sandbox, svc::Container, Option<u32>)>, Error> {
    let mut out = Vec::new();
    for k in containers(c, format!("labels.\"{KIND}\"==sandbox"))? {
        let pid = task_pid(c, &k.id)?;
        out.push((
            Sandbox {
                id: k.id.clone(),
                namespace: label(&k, POD_NAMESPACE).to_string(),
                name: label(&k, POD_NAME).to_string(),
                ready: pid.is_some(),
                created_at: created_ns(&k),
                state: if pid.is_some() {
                    "task running"
                } else {
                    "no running task"
                }
                .into(),
            },
            k,
            pid,
        ));
    }
    Ok(out)
}

/// IP and netns path from the CRI plugin's metadata extension, else from the OCI spec.
fn details(k: &svc::Container) -> (Option<IpAddr>, Option<PathBuf>) {
    let meta: Option<serde_json::Value> = k
        .extensions
        .get(SANDBOX_METADATA)
        .and_then(|any| serde_json::from_slice(&any.value).ok());
    let md = meta.as_ref().and_then(|m| m.get("Metadata"));
    let ip = md
        .and_then(|m| m.get("IP"))
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok());
    let netns = md
        .and_then(|m| m.get("NetNSPath"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            k.spec
                .as_ref()
                .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s.value).ok())
                .and_then(|spec| crate::netns_from_spec(&spec))
        });
    (ip, netns)
}

pub(crate) fn resolve(c: &Client, pod: &PodRef) -> Result<Target, Error> {
    let all = sandboxes(c)?;
    let views: Vec<Sandbox> = all.iter().map(|(s, _, _)| s.clone()).collect();
    let (chosen, notes) = select::pick(&views, pod, &c.endpoint)?;
    let Some((_, k, Some(sandbox_pid))) = all.iter().find(|(s, _, _)| s.id == chosen.id) else {
        return Err(Error::NoPid {
            what: "sandbox",
            id: chosen.id.clone(),
        });
    };
    let (ip, netns) = details(k);
    let mut target = Target {
        pod: pod.clone(),
        pid: *sandbox_pid,
        sandbox_id: chosen.id.clone(),
        container_id: None,
        ip,
        netns_path: netns,
        notes,
        runtime_process: crate::RuntimeProcess::Unknown,
    };
    if let Some(name) = &pod.container {
        let filter = format!(
            "labels.\"{KIND}\"==container,labels.\"io.kubernetes.sandbox.id\"=={}",
            chosen.id
        );
        let mut ks = containers(c, filter)?;
        if ks.is_empty() {
            // Older CRI plugins do not label the sandbox ID: fall back to the pod's labels.
            ks = containers(
                c,
                format!(
                    "labels.\"{KIND}\"==container,labels.\"{POD_NAMESPACE}\"=={},labels.\"{POD_NAME}\"=={}",
                    pod.namespace, pod.name
                ),
            )?;
        }
        ks.sort_by_key(|k| std::cmp::Reverse(created_ns(k)));
        let mut available = Vec::new();
        let mut found = None;
        for k in &ks {
            let pid = task_pid(c, &k.id)?;
            let cname = label(k, CONTAINER_NAME);
            available.push(format!(
                "{cname} ({})",
                if pid.is_some() {
                    "running"
                } else {
                    "not running"
                }
            ));
            if cname == name && found.is_none() {
                if let Some(pid) = pid {
                    found = Some((k.id.clone(), pid));
                }
            }
        }
        let Some((id, pid)) = found else {
            return Err(Error::ContainerNotFound {
                pod: format!("{}/{}", pod.namespace, pod.name),
                container: name.clone(),
                available,
            });
        };
        target.container_id = Some(id);
        target.pid = pid;
    }
    if target.netns_path.is_none() {
        target.netns_path = Some(PathBuf::from(format!("/proc/{}/ns/net", target.pid)));
    }
    Ok(target)
}

pub(crate) fn list(c: &Client) -> Result<Vec<PodInfo>, Error> {
    let mut all = sandboxes(c)?;
    all.sort_by_key(|(s, _, _)| std::cmp::Reverse(s.created_at));
    Ok(all
        .into_iter()
        .map(|(s, k, pid)| {
            let (ip, netns) = details(&k);
            PodInfo {
                namespace: s.namespace,
                name: s.name,
                state: if s.ready { "Ready" } else { "NotReady" }.into(),
                pid,
                ip,
                netns_path: netns,
                sandbox_id: s.id,
            }
        })
        .collect())
}
