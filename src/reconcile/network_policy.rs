//! The NetworkPolicy `<name>` follows `spec.networkPolicy`: applied while it is set, deleted
//! (only if it is this ModelDeployment's) once it is removed.
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::ObjectRef;

use super::build;
use super::children::{Refusal, apply_child};
use super::validate::ValidModel;
use super::{Context, apply, observe};
use crate::crd::ModelDeployment;
use crate::error::Result;

pub async fn sync(
    ctx: &Context,
    md: &ModelDeployment,
    model: &ValidModel,
    owner: OwnerReference,
) -> Result<Option<Refusal>> {
    let Some(spec) = &md.spec.network_policy else {
        let key = ObjectRef::new(&model.instance).within(&model.namespace);
        let ours = ctx.stores.network_policies.get(&key).is_some_and(|p| {
            observe::ownership_problem("NetworkPolicy", &p.metadata, &owner.uid).is_none()
        });
        if ours {
            apply::delete::<NetworkPolicy>(&ctx.client, &model.namespace, &model.instance).await?;
        }
        return Ok(None);
    };
    let port = build::server_port(md);
    let uid = owner.uid.clone();
    let policy = build::network_policy(model, spec, ctx.config.scraper.as_ref(), port, owner);
    let applied = apply_child(
        ctx,
        &ctx.stores.network_policies,
        &policy,
        "NetworkPolicy",
        &uid,
    )
    .await?;
    Ok(applied.err())
}
