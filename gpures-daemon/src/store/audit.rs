//! `audit_log`: who did what to which reservation, resource or user.
//! [`AuditAction`] is the closed list of actions; [`record`] writes one row in
//! the caller's transaction, so the row exists exactly when the change does.

use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

/// Every action the audit log records, stored as its dotted name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text")]
pub enum AuditAction {
    #[sqlx(rename = "user.register")]
    UserRegister,
    #[sqlx(rename = "user.role")]
    UserRole,
    #[sqlx(rename = "user.disable")]
    UserDisable,
    #[sqlx(rename = "user.enable")]
    UserEnable,
    #[sqlx(rename = "user.bind")]
    UserBind,
    #[sqlx(rename = "user.revoke_tokens")]
    UserRevokeTokens,
    #[sqlx(rename = "user.password")]
    UserPassword,
    #[sqlx(rename = "user.reset_password")]
    UserResetPassword,
    #[sqlx(rename = "user.reset_code")]
    UserResetCode,
    #[sqlx(rename = "user.profile")]
    UserProfile,
    #[sqlx(rename = "user.logout")]
    UserLogout,
    #[sqlx(rename = "auth.rotate_key")]
    AuthRotateKey,
    #[sqlx(rename = "queue.enqueue")]
    QueueEnqueue,
    #[sqlx(rename = "queue.cancel")]
    QueueCancel,
    #[sqlx(rename = "queue.grant")]
    QueueGrant,
    #[sqlx(rename = "process.stop")]
    ProcessStop,
    #[sqlx(rename = "process.continue")]
    ProcessContinue,
    #[sqlx(rename = "process.terminate")]
    ProcessTerminate,
    #[sqlx(rename = "process.kill")]
    ProcessKill,
    #[sqlx(rename = "resource.create")]
    ResourceCreate,
    #[sqlx(rename = "resource.update")]
    ResourceUpdate,
    #[sqlx(rename = "resource.remove")]
    ResourceRemove,
    #[sqlx(rename = "reservation.create")]
    ReservationCreate,
    #[sqlx(rename = "reservation.update")]
    ReservationUpdate,
    #[sqlx(rename = "reservation.cancel")]
    ReservationCancel,
    #[sqlx(rename = "reservation.release")]
    ReservationRelease,
    /// An admin booked past lab policy (the reason says why).
    #[sqlx(rename = "reservation.policy_override")]
    ReservationPolicyOverride,
    #[sqlx(rename = "reservation.approve")]
    ReservationApprove,
    #[sqlx(rename = "block.create")]
    BlockCreate,
    #[sqlx(rename = "block.remove")]
    BlockRemove,
    #[sqlx(rename = "policy.set")]
    PolicySet,
    #[sqlx(rename = "group.change")]
    GroupChange,
}

/// Who acted: the account (absent for the host admin) and the Unix user.
#[derive(Clone, Copy, Debug)]
pub struct By<'a> {
    pub user_id: Option<i64>,
    pub unix_user: &'a str,
}

/// What was acted on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Target {
    pub reservation: Option<Uuid>,
    pub resource: Option<i64>,
    pub user: Option<i64>,
}

/// Records `action` by `by` on `target`.
pub async fn record(
    conn: &mut PgConnection,
    by: By<'_>,
    action: AuditAction,
    target: Target,
) -> Result<()> {
    record_with(conn, by, action, target, None).await
}

/// Records `action` with the reason given for it.
pub async fn record_with(
    conn: &mut PgConnection,
    by: By<'_>,
    action: AuditAction,
    target: Target,
    reason: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor_unix_user, action, reservation_id, resource_id, target_user_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::text IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('reason', $7::text) END)",
    )
    .bind(by.user_id)
    .bind(by.unix_user)
    .bind(action)
    .bind(target.reservation)
    .bind(target.resource)
    .bind(target.user)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
