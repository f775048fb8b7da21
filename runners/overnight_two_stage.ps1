<#
.SYNOPSIS
    The overnight two-stage run (runners/plans/two_stage_overnight.yaml by default).
.DESCRIPTION
    Runs `fertrain pipeline run PLAN`, then prints `fertrain pipeline status PLAN`. After a crash
    or power loss run the same command again: finished stages are skipped and the interrupted
    one resumes from its checkpoint_last.pt. The exit code is fertrain's (0 done, 1 a stage
    failed, 2 bad input).
.PARAMETER Plan
    Plan YAML [runners/plans/two_stage_overnight.yaml].
.PARAMETER Root
    Put the stages under this folder instead of the plan's root.
.PARAMETER LogDir
    Folder of the dated log files [outputs/logs].
.PARAMETER RecoverStaleLock
    Take over locks that a crashed run left.
.PARAMETER KeepGoing
    After a failed stage, still run the stages that do not need it.
.EXAMPLE
    .\runners\overnight_two_stage.ps1
.EXAMPLE
    .\runners\overnight_two_stage.ps1 -RecoverStaleLock -LogDir D:\fer\logs
#>
[CmdletBinding()]
param(
    [string]$Plan = 'runners/plans/two_stage_overnight.yaml',
    [string]$Root = '',
    [string]$LogDir = 'outputs/logs',
    [switch]$RecoverStaleLock,
    [switch]$KeepGoing
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot '_common.ps1')
$fertrain = Initialize-Runner -Name 'overnight_two_stage' -LogDir $LogDir

$fertrainArgs = @('pipeline', 'run', $Plan)
if ($Root) { $fertrainArgs += @('--root', $Root) }
if ($RecoverStaleLock) { $fertrainArgs += @('--recover-stale-lock') }
if ($KeepGoing) { $fertrainArgs += @('--keep-going') }
& $fertrain @fertrainArgs 2>&1 | Tee-Object -FilePath $script:LogFile -Append
$code = $LASTEXITCODE
$fertrainArgs = @('pipeline', 'status', $Plan)
if ($Root) { $fertrainArgs += @('--root', $Root) }
& $fertrain @fertrainArgs 2>&1 | Tee-Object -FilePath $script:LogFile -Append
exit $code
