<#
.SYNOPSIS
    Smoke verification of a two-stage plan: every stage, tiny, in minutes on CPU.
.DESCRIPTION
    Runs `fertrain pipeline run PLAN --smoke`: the plan's stages with its smoke overrides (one
    epoch, small images) into the plan's smoke root. Re-running continues; a finished smoke run
    does nothing. The exit code is fertrain's (0 done, 1 a stage failed, 2 bad input).
.PARAMETER Plan
    Plan YAML [runners/plans/demo.yaml].
.PARAMETER Root
    Put the stages under this folder instead of the plan's smoke root.
.PARAMETER LogDir
    Folder of the dated log files [outputs/logs].
.PARAMETER RecoverStaleLock
    Take over locks that a crashed run left.
.EXAMPLE
    .\runners\smoke_two_stage.ps1
.EXAMPLE
    .\runners\smoke_two_stage.ps1 -Plan runners\plans\two_stage_overnight.yaml -RecoverStaleLock
#>
[CmdletBinding()]
param(
    [string]$Plan = 'runners/plans/demo.yaml',
    [string]$Root = '',
    [string]$LogDir = 'outputs/logs',
    [switch]$RecoverStaleLock
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot '_common.ps1')
$fertrain = Initialize-Runner -Name 'smoke_two_stage' -LogDir $LogDir

$fertrainArgs = @('pipeline', 'run', $Plan, '--smoke')
if ($Root) { $fertrainArgs += @('--root', $Root) }
if ($RecoverStaleLock) { $fertrainArgs += @('--recover-stale-lock') }
& $fertrain @fertrainArgs 2>&1 | Tee-Object -FilePath $script:LogFile -Append
exit $LASTEXITCODE
