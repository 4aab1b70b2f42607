//! Resources: list, add, change and disable GPUs and servers, and create
//! them from what the GPU probe found ([`Service::discover`]).

use gpures_proto::{
    NewResource, Resource, ResourceKind, ResourcePage, ResourceUpdate, StatusCursor, limits,
};

use super::{Actor, Entity, Error, Result, Service, audit_by, validate};
use crate::gpu::GpuSample;
use crate::store::audit::{self, AuditAction, Target};
use crate::store::{self, resources};

/// What [`Service::discover`] did with one GPU or resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovered {
    /// Already known with this index and host.
    Unchanged { name: String, uuid: String },
    /// Known by UUID; its index or host changed.
    Moved {
        name: String,
        index: i32,
        host: String,
    },
    /// A resource of that name without a UUID now has this GPU's UUID.
    Claimed { name: String, uuid: String },
    /// A new resource.
    Added {
        name: String,
        model: String,
        uuid: String,
    },
    /// A GPU resource of this host the probe no longer sees.
    Missing { name: String, uuid: String },
}

impl Service {
    /// One page of the resources (inactive ones too when asked) in status
    /// order, from the start or after `after`, ending once about
    /// [`limits::PAGE_BYTES_MAX`] bytes are in it.
    ///
    /// # Errors
    /// Store failures.
    pub async fn resources_page(
        &self,
        actor: &Actor,
        include_inactive: bool,
        after: Option<&StatusCursor>,
    ) -> Result<ResourcePage> {
        let mut resources = self.list_resources(actor, include_inactive).await?;
        // The order and the cut are made here, not in SQL, so that they are
        // the status order whatever the database's collation.
        resources.sort_by(|a, b| StatusCursor::key_of(a).cmp(&StatusCursor::key_of(b)));
        if let Some(c) = after {
            resources.retain(|r| StatusCursor::key_of(r) > c.key());
        }
        let fits = gpures_proto::framing::fitting(
            &resources,
            limits::PAGE_BYTES_MAX,
            gpures_proto::framing::encoded_len,
        );
        let next = if fits < resources.len() {
            resources.truncate(fits);
            resources.last().map(StatusCursor::after)
        } else {
            None
        };
        Ok(ResourcePage { resources, next })
    }

    /// Every resource, inactive ones too when asked (the host admin's
    /// commands; members page through [`Self::resources_page`]).
    ///
    /// # Errors
    /// Store failures.
    pub async fn list_resources(
        &self,
        _actor: &Actor,
        include_inactive: bool,
    ) -> Result<Vec<Resource>> {
        let mut conn = self.store().acquire().await?;
        Ok(resources::list(&mut conn, include_inactive).await?)
    }

    /// One resource by name.
    ///
    /// # Errors
    /// `NotFound`, store failures.
    pub async fn resource_by_name(&self, _actor: &Actor, name: &str) -> Result<Resource> {
        let mut conn = self.store().acquire().await?;
        resources::by_name(&mut conn, name)
            .await
            .map_err(Error::not_found(Entity::Resource))
    }

    /// Adds a resource (admins and the host admin). An empty host means this
    /// daemon's host.
    ///
    /// # Errors
    /// `Forbidden`, invalid fields, a duplicate name.
    pub async fn create_resource(&self, actor: &Actor, new: NewResource) -> Result<Resource> {
        actor.require_admin()?;
        let host = validate::host(&new.host)?;
        validate::gpu_index(new.gpu_index)?;
        let new = NewResource {
            name: validate::resource_name(&new.name)?,
            host: if host.is_empty() {
                self.host().to_owned()
            } else {
                host
            },
            description: validate::description(&new.description)?,
            gpu_uuid: new.gpu_uuid.map(|u| validate::gpu_uuid(&u)).transpose()?,
            ..new
        };
        let (svc, actor) = (self.clone(), actor.clone());
        self.transaction(async move {
            let mut tx = svc.store().begin().await?;
            let r = resources::insert(&mut tx, &new)
                .await
                .map_err(Error::duplicate("name", "a resource with this name exists"))?;
            record(&mut tx, &actor, AuditAction::ResourceCreate, r.id).await?;
            tx.commit().await?;
            Ok(r)
        })
        .await
    }

    /// Changes a resource (admins and the host admin).
    ///
    /// # Errors
    /// `Forbidden`, an unknown id, invalid fields, a duplicate name.
    pub async fn update_resource(
        &self,
        actor: &Actor,
        id: i64,
        mut update: ResourceUpdate,
    ) -> Result<Resource> {
        actor.require_admin()?;
        if let Some(name) = &update.name {
            update.name = Some(validate::resource_name(name)?);
        }
        if let Some(d) = &update.description {
            update.description = Some(validate::description(d)?);
        }
        if let Some(h) = &update.host {
            update.host = Some(validate::host(h)?);
        }
        if let Some(index) = update.gpu_index {
            validate::gpu_index(index)?;
        }
        if let Some(Some(uuid)) = &update.gpu_uuid {
            update.gpu_uuid = Some(Some(validate::gpu_uuid(uuid)?));
        }
        let (svc, actor) = (self.clone(), actor.clone());
        self.transaction(async move {
            let mut tx = svc.store().begin().await?;
            let r = resources::update(&mut tx, id, &update)
                .await
                .map_err(|e| match e {
                    crate::store::StoreError::NotFound => Error::NotFound(Entity::Resource),
                    e => Error::duplicate("name", "a resource with this name exists")(e),
                })?;
            record(&mut tx, &actor, AuditAction::ResourceUpdate, id).await?;
            tx.commit().await?;
            Ok(r)
        })
        .await
    }

    /// Removes a resource that no reservation, past or future, refers to
    /// (one with history is disabled instead: its reservations are history).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Invalid` when reservations refer to it.
    pub async fn remove_resource(&self, actor: &Actor, name: &str) -> Result<Resource> {
        actor.require_admin()?;
        validate::lookup_text("name", name)?;
        let (svc, actor, name) = (self.clone(), actor.clone(), name.to_owned());
        self.transaction(async move {
            let mut tx = svc.store().begin().await?;
            let r = resources::by_name(&mut tx, &name)
                .await
                .map_err(Error::not_found(Entity::Resource))?;
            resources::lock(&mut tx, &[r.id]).await?;
            if !resources::delete_unused(&mut tx, r.id).await? {
                return Err(Error::invalid(
                    "name",
                    format!(
                        "{} has reservations (its history): disable it instead \
                         (`resource disable {}`)",
                        r.name, r.name
                    ),
                ));
            }
            record(&mut tx, &actor, AuditAction::ResourceRemove, r.id).await?;
            tx.commit().await?;
            Ok(r)
        })
        .await
    }

    /// Creates or updates one resource per GPU of `host` (`gpu<index>`, or
    /// `<host>-gpu<index>` when another host already has that name), keyed by
    /// UUID so that running it again changes nothing. GPUs that disappeared
    /// are reported, not deleted: their reservations are history.
    ///
    /// # Errors
    /// `Forbidden`, an index out of range, store failures.
    pub async fn discover(
        &self,
        actor: &Actor,
        host: &str,
        gpus: &[GpuSample],
    ) -> Result<Vec<Discovered>> {
        actor.require_admin()?;
        let existing = self.list_resources(actor, true).await?;
        let mut out = Vec::new();
        for g in gpus {
            let index =
                i32::try_from(g.index).map_err(|_| Error::invalid("gpu_index", "out of range"))?;
            if let Some(r) = existing
                .iter()
                .find(|r| r.gpu_uuid.as_deref() == Some(g.uuid.as_str()))
            {
                if r.gpu_index == Some(index) && r.host == host {
                    out.push(Discovered::Unchanged {
                        name: r.name.clone(),
                        uuid: g.uuid.clone(),
                    });
                    continue;
                }
                let update = ResourceUpdate {
                    gpu_index: Some(Some(index)),
                    host: Some(host.to_owned()),
                    ..ResourceUpdate::default()
                };
                self.update_resource(actor, r.id, update).await?;
                out.push(Discovered::Moved {
                    name: r.name.clone(),
                    index,
                    host: host.to_owned(),
                });
                continue;
            }
            let plain = format!("gpu{index}");
            let claimable = existing
                .iter()
                .find(|r| r.name == plain && r.host == host && r.gpu_uuid.is_none());
            if let Some(r) = claimable {
                let update = ResourceUpdate {
                    gpu_index: Some(Some(index)),
                    gpu_uuid: Some(Some(g.uuid.clone())),
                    ..ResourceUpdate::default()
                };
                self.update_resource(actor, r.id, update).await?;
                out.push(Discovered::Claimed {
                    name: r.name.clone(),
                    uuid: g.uuid.clone(),
                });
                continue;
            }
            let name = if existing.iter().any(|r| r.name == plain) {
                format!("{host}-gpu{index}")
            } else {
                plain
            };
            let new = NewResource {
                name,
                host: host.to_owned(),
                kind: ResourceKind::Gpu,
                gpu_index: Some(index),
                gpu_uuid: Some(g.uuid.clone()),
                description: g.name.clone(),
            };
            let r = self.create_resource(actor, new).await?;
            out.push(Discovered::Added {
                name: r.name,
                model: g.name.clone(),
                uuid: g.uuid.clone(),
            });
        }
        for r in existing
            .iter()
            .filter(|r| r.host == host && r.kind == ResourceKind::Gpu)
        {
            if let Some(uuid) = &r.gpu_uuid
                && !gpus.iter().any(|g| &g.uuid == uuid)
            {
                out.push(Discovered::Missing {
                    name: r.name.clone(),
                    uuid: uuid.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// Audits `action` on resource `id` by `actor` and tells live clients, in
/// the caller's transaction.
async fn record(
    conn: &mut sqlx::PgConnection,
    actor: &Actor,
    action: AuditAction,
    id: i64,
) -> Result<()> {
    let name = actor.audit_name();
    let target = Target {
        resource: Some(id),
        ..Target::default()
    };
    audit::record(conn, audit_by(actor, &name), action, target).await?;
    store::notify(conn, &store::Changed::Everything).await?;
    Ok(())
}
