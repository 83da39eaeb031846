//! The loopback server driven by kube-rs, as Harmony's executor will drive it: every
//! behaviour the executor relies on, checked through a real client.

use harmony_kube_loopback::Server;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::json;

fn client(server: &Server, impersonate: Option<&str>) -> Client {
    let mut config = Config::new(server.url().parse().unwrap());
    config.auth_info.impersonate = impersonate.map(String::from);
    Client::try_from(config).unwrap()
}

fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn crud_conflicts_and_selectors() {
    let server = Server::start().await.unwrap();
    let c = client(&server, None);
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(&PostParams::default(), &obj(json!({"metadata": {"name": "acme-prod"}}))).await.unwrap();

    let secrets: Api<Secret> = Api::namespaced(c.clone(), "acme-prod");
    let s: Secret = obj(
        json!({"metadata": {"name": "sh.helm.release.v1.web.v1", "labels": {"owner": "helm", "name": "web", "version": "1"}}, "type": "helm.sh/release.v1", "stringData": {"release": "abc"}}),
    );
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    // stringData is folded into base64 data.
    assert_eq!(created.data.unwrap()["release"].0, b"abc");
    let rv1 = created.metadata.resource_version.clone().unwrap();

    // Duplicate create: 409 AlreadyExists.
    let (code, reason, _) = api_error(secrets.create(&PostParams::default(), &s).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    // Replace with the current resourceVersion works and bumps it; with the old one: 409 Conflict.
    let mut current = secrets.get("sh.helm.release.v1.web.v1").await.unwrap();
    current.metadata.labels.as_mut().unwrap().insert("status".into(), "deployed".into());
    let replaced = secrets.replace("sh.helm.release.v1.web.v1", &PostParams::default(), &current).await.unwrap();
    assert_ne!(replaced.metadata.resource_version.as_deref(), Some(rv1.as_str()));
    current.metadata.resource_version = Some(rv1);
    let (code, reason, message) = api_error(secrets.replace("sh.helm.release.v1.web.v1", &PostParams::default(), &current).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(message.contains("the object has been modified"), "{message}");

    // Label selectors, as Helm's storage driver uses them.
    secrets.create(&PostParams::default(), &obj(json!({"metadata": {"name": "other", "labels": {"owner": "someone"}}}))).await.unwrap();
    let helm = secrets.list(&ListParams::default().labels("owner=helm,name=web")).await.unwrap();
    assert_eq!(helm.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["sh.helm.release.v1.web.v1"]);
    let not_helm = secrets.list(&ListParams::default().labels("owner notin (helm)")).await.unwrap();
    assert_eq!(not_helm.items.len(), 1);

    // 404s: a missing object, and a create in a missing namespace.
    let (code, _, message) = api_error(secrets.get("nope").await.unwrap_err());
    assert_eq!(code, 404);
    assert_eq!(message, "secrets \"nope\" not found");
    let elsewhere: Api<Secret> = Api::namespaced(c.clone(), "missing");
    let (code, _, message) = api_error(elsewhere.create(&PostParams::default(), &obj(json!({"metadata": {"name": "x"}}))).await.unwrap_err());
    assert_eq!((code, message.as_str()), (404, "namespaces \"missing\" not found"));

    // Delete, then it is gone; deleting a namespace removes its objects.
    secrets.delete("other", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(secrets.get("other").await.unwrap_err()).0, 404);
    nss.delete("acme-prod", &DeleteParams::default()).await.unwrap();
    assert!(server.list("v1", "Secret").is_empty());
}

#[tokio::test]
async fn server_side_apply_owns_fields() {
    let server = Server::start().await.unwrap();
    let c = client(&server, None);
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let manifest = |replicas: i32, image: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}})
    };
    let pp = PatchParams::apply("harmony");
    let d = deployments.patch("web", &pp, &Patch::Apply(manifest(2, "nginx:1"))).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    // The loopback "controller" reports it ready.
    assert_eq!(d.status.unwrap().ready_replicas, Some(2));
    let rv = d.metadata.resource_version.clone();
    // Same apply again: nothing changes, not even the resourceVersion.
    let again = deployments.patch("web", &pp, &Patch::Apply(manifest(2, "nginx:1"))).await.unwrap();
    assert_eq!(again.metadata.resource_version, rv);
    let writes = server.writes();
    // Another applier takes the field (`kubectl apply --server-side --force-conflicts`);
    // harmony's next apply of a different replica count then conflicts.
    deployments
        .patch(
            "web",
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    let (code, reason, message) = api_error(deployments.patch("web", &pp, &Patch::Apply(manifest(3, "nginx:2"))).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(message, "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas");
    assert_eq!(server.writes(), writes + 1);
    // Forced, harmony takes the field back; the spec change bumps the generation.
    let forced = deployments.patch("web", &pp.clone().force(), &Patch::Apply(manifest(3, "nginx:2"))).await.unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(3));
    assert_eq!(forced.metadata.generation, Some(3));
    let managers: Vec<String> = forced.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
    assert_eq!(managers, ["harmony"]);
    // dryRun=All changes nothing.
    let dry = deployments.patch("web", &PatchParams::apply("harmony").dry_run(), &Patch::Apply(manifest(4, "nginx:3"))).await.unwrap();
    assert_eq!(dry.spec.unwrap().replicas, Some(4));
    assert_eq!(deployments.get("web").await.unwrap().spec.unwrap().replicas, Some(3));
    // `metadata.resourceVersion` in the configuration is a precondition, even forced: a stale
    // one is refused (409, the optimistic-lock message), the current one applies.
    let current = forced.metadata.resource_version.clone().unwrap();
    let mut stale = manifest(4, "nginx:2");
    stale["metadata"]["resourceVersion"] = json!(rv.unwrap());
    let (code, reason, message) = api_error(deployments.patch("web", &pp.clone().force(), &Patch::Apply(&stale)).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(message.contains("the object has been modified"), "{message}");
    assert_eq!(deployments.get("web").await.unwrap().spec.unwrap().replicas, Some(3));
    stale["metadata"]["resourceVersion"] = json!(current);
    assert_eq!(deployments.patch("web", &pp.clone().force(), &Patch::Apply(&stale)).await.unwrap().spec.unwrap().replicas, Some(4));
}

#[tokio::test]
async fn impersonation_is_authorized_by_rbac() {
    let server = Server::start().await.unwrap();
    let admin = client(&server, None);
    for ns in ["acme-prod", "globex"] {
        Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &obj(json!({"metadata": {"name": ns}}))).await.unwrap();
    }
    let roles: Api<Role> = Api::namespaced(admin.clone(), "acme-prod");
    roles
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "deployer"}, "rules": [{"apiGroups": ["", "apps"], "resources": ["secrets", "deployments"], "verbs": ["*"]}]})),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "acme-prod");
    bindings
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "deployer"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"}, "subjects": [{"kind": "ServiceAccount", "name": "harmony-deployer", "namespace": "acme-prod"}]})))
        .await
        .unwrap();

    let tenant = client(&server, Some("system:serviceaccount:acme-prod:harmony-deployer"));
    let own: Api<Secret> = Api::namespaced(tenant.clone(), "acme-prod");
    own.create(&PostParams::default(), &obj(json!({"metadata": {"name": "ok"}}))).await.unwrap();
    // Outside its namespace: 403 worded like the real server.
    let other: Api<Secret> = Api::namespaced(tenant.clone(), "globex");
    let (code, reason, message) = api_error(other.create(&PostParams::default(), &obj(json!({"metadata": {"name": "nope"}}))).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "secrets is forbidden: User \"system:serviceaccount:acme-prod:harmony-deployer\" cannot create resource \"secrets\" in API group \"\" in the namespace \"globex\""
    );
    // A verb the role does not grant on a resource it does not name: refused too.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(tenant.clone(), "acme-prod");
    assert_eq!(api_error(cms.list(&ListParams::default()).await.unwrap_err()).0, 403);
    // Another service account gets nothing.
    let stranger = client(&server, Some("system:serviceaccount:globex:deployer"));
    assert_eq!(api_error(Api::<Secret>::namespaced(stranger, "acme-prod").get("ok").await.unwrap_err()).0, 403);
    assert!(server.get("v1", "Secret", "globex", "nope").is_none());
}

#[tokio::test]
async fn discovery_sees_builtin_groups() {
    let server = Server::start().await.unwrap();
    let discovery = kube::Discovery::new(client(&server, None)).run().await.unwrap();
    let (ar, caps) = discovery.resolve_gvk(&kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment")).unwrap();
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let v = client(&server, None).apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.33.0");
}

/// Lists page by `limit` and `continue` as on the real server: each page at most `limit`
/// items matching the selector, `metadata.continue` and `remainingItemCount` while more are
/// left; a token the server did not issue is a 400.
#[tokio::test]
async fn lists_page_by_limit_and_continue() {
    let server = Server::start().await.unwrap();
    for ns in ["a", "b"] {
        server.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        for i in 0..5 {
            server.create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": ns, "labels": {"keep": if i == 2 { "no" } else { "yes" }}}}));
        }
    }
    let c = client(&server, None);
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::all(c.clone());
    let mut names = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().labels("keep=yes").limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages.push((page.items.len(), page.metadata.remaining_item_count));
        names.extend(page.items.iter().map(|o| format!("{}/{}", o.metadata.namespace.as_deref().unwrap(), o.metadata.name.as_deref().unwrap())));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, vec![(3, Some(5)), (3, Some(2)), (2, None)]);
    assert_eq!(names, ["a/cm-0", "a/cm-1", "a/cm-3", "a/cm-4", "b/cm-0", "b/cm-1", "b/cm-3", "b/cm-4"]);
    // Without a limit: everything at once.
    assert_eq!(cms.list(&ListParams::default().labels("keep=yes")).await.unwrap().items.len(), 8);
    let (code, _, message) = api_error(cms.list(&ListParams::default().limit(3).continue_token("not-a-token")).await.unwrap_err());
    assert_eq!(code, 400, "{message}");
}
