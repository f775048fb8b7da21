<#
.SYNOPSIS
    Lock-aware cleaning of run directories under a root.
.DESCRIPTION
    Calls `fertrain runs clean`, which refuses a locked (running) run and anything outside the
    root, and deletes only recognisable run directories. -DryRun lists what would go.
.PARAMETER Root
    Only directories inside this folder may be deleted.
.PARAMETER Runs
    Run directories to delete.
.PARAMETER DryRun
    Say what would be deleted; delete nothing.
.PARAMETER LogDir
    Folder of the dated log files [outputs/logs].
.EXAMPLE
    .\runners\clean_outputs.ps1 -Root outputs\demo_plan_smoke -Runs outputs\demo_plan_smoke\teachers\rn10t_A -DryRun
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Root,
    [Parameter(Mandatory = $true)][string[]]$Runs,
    [switch]$DryRun,
    [string]$LogDir = 'outputs/logs'
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot '_common.ps1')
$fertrain = Initialize-Runner -Name 'clean_outputs' -LogDir $LogDir

$fertrainArgs = @('runs', 'clean', '--root', $Root)
if ($DryRun) { $fertrainArgs += @('--dry-run') }
$fertrainArgs += $Runs
& $fertrain @fertrainArgs 2>&1 | Tee-Object -FilePath $script:LogFile -Append
exit $LASTEXITCODE
