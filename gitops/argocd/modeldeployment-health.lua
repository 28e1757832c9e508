-- Argo CD health of a Sconce ModelDeployment (sconce.dev/v1alpha1), read from the status the
-- operator writes. Install: argocd-cm key resource.customizations.health.sconce.dev_ModelDeployment
-- (docs/gitops.md). Lua 5.1, as Argo CD runs it.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- "Reason: message", or the fallback when the condition says nothing.
local function describe(c, fallback)
  if c == nil or c.message == nil or c.message == "" then
    return fallback
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.message
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sconce operator to report a status"
  return hs
end

-- A status about an older spec says nothing about the one just synced.
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sconce operator to observe generation " .. generation
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end

local progressing = condition(status, "Progressing")
if status.rolloutPhase == "Paused" then
  hs.status = "Suspended"
  hs.message = describe(progressing, "Rollout paused until promoted")
  return hs
end
if status.rolloutPhase == "Progressing" or status.rolloutPhase == "Promoting" then
  hs.status = "Progressing"
  hs.message = describe(progressing, "Rollout in progress")
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
if progressing ~= nil and progressing.status == "True" then
  hs.message = describe(progressing, "Progressing")
else
  hs.message = describe(ready, "Waiting for the model to become ready")
end
return hs
